//go:build wasip1

// Command membomb is a hostile policy: decide allocates until memory runs
// out. The host's memory cap must stop it.
package main

import (
	"replayd/policies/abi"
	"replayd/policies/sdk"
)

type bomb struct{ keep [][]byte }

func (b *bomb) Init([]byte) error { return nil }

func (b *bomb) Decide(*abi.DecideHeader, *abi.SampleMeta) abi.Decision {
	for {
		chunk := make([]byte, 16<<20)
		for i := range chunk {
			chunk[i] = byte(i)
		}
		b.keep = append(b.keep, chunk)
	}
}

func (b *bomb) Mix(*abi.MixInput) [abi.NumSlots]float32 { return [abi.NumSlots]float32{1} }

func init() { sdk.Register(&bomb{}) }

func main() {}

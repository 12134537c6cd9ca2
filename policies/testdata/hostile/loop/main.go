//go:build wasip1

// Command loop is a hostile policy: decide never returns. The host must
// time the call out and refuse the policy.
package main

import (
	"replayd/policies/abi"
	"replayd/policies/sdk"
)

type loop struct{ n uint64 }

func (l *loop) Init([]byte) error { return nil }

func (l *loop) Decide(_ *abi.DecideHeader, s *abi.SampleMeta) abi.Decision {
	for s.Seq != 0 { // seq is never 0: spin forever
		l.n++
	}
	return abi.Decision{}
}

func (l *loop) Mix(*abi.MixInput) [abi.NumSlots]float32 { return [abi.NumSlots]float32{1} }

func init() { sdk.Register(&loop{}) }

func main() {}

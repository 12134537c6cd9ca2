//go:build wasip1

// Command trap is a hostile policy: decide dereferences nil and panics.
package main

import (
	"replayd/policies/abi"
	"replayd/policies/sdk"
)

type trap struct{ p *abi.Decision }

func (t *trap) Init([]byte) error { return nil }

func (t *trap) Decide(*abi.DecideHeader, *abi.SampleMeta) abi.Decision { return *t.p }

func (t *trap) Mix(*abi.MixInput) [abi.NumSlots]float32 { return [abi.NumSlots]float32{1} }

func init() { sdk.Register(&trap{}) }

func main() {}

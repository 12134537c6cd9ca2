//go:build wasip1

// Package sdk is the guest side of the replayd policy ABI for policies
// written in Go. A policy's main package registers a Policy from an init
// function; this package provides the module's exports (abi_version, alloc,
// init, decide, mix) and all buffer encoding:
//
//	package main
//
//	import "replayd/policies/sdk"
//
//	func init() { sdk.Register(&myPolicy{}) }
//	func main() {}
//
// Build it as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -o p.wasm ./mypolicy
//
// A policy must be a pure function of its config and its inputs: the host
// may re-instantiate it at any time (after an error, a restart or a swap),
// so state kept between calls would make runs irreproducible. Everything a
// policy needs (the first and latest eval scores, counts per slot) is in
// the inputs for that reason.
package sdk

import (
	"unsafe"

	"replayd/policies/abi"
)

// Policy is what a policy module implements.
type Policy interface {
	// Init receives the config blob the host passes at instantiation
	// (empty when none). An error refuses the policy.
	Init(config []byte) error
	// Decide returns the decision for one sample of a decide batch.
	Decide(h *abi.DecideHeader, s *abi.SampleMeta) abi.Decision
	// Mix returns the proportions over the 8 slots (bucket*2 + replay).
	// They must be finite, >= 0 and sum to 1.
	Mix(in *abi.MixInput) [abi.NumSlots]float32
}

// The module's state lives in package variables because wasm exports are
// plain functions: there is exactly one policy per module instance.
var (
	registered Policy
	// in is the buffer alloc hands to the host; the host writes a decide or
	// mix input into it and passes its address back.
	in []byte
	// out holds the last decide or mix answer until the host has read it
	// (the next call overwrites it).
	out   []byte
	stats abi.MixInput
)

// Register installs the module's policy. Call it from an init function.
func Register(p Policy) { registered = p }

func addr(b []byte) uint32 { return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

//go:wasmexport abi_version
func abiVersion() int32 { return abi.Version }

//go:wasmexport alloc
func alloc(size int32) int32 {
	if size < 0 {
		return 0
	}
	if cap(in) < int(size) || cap(in) == 0 {
		in = make([]byte, max(int(size), 64))
	}
	in = in[:size]
	return int32(addr(in[:cap(in)]))
}

// input returns the input buffer the host filled, or nil when ptr/len do
// not designate the buffer alloc returned.
func input(ptr, n int32) []byte {
	if n < 0 || int(n) > cap(in) || uint32(ptr) != addr(in[:cap(in)]) {
		return nil
	}
	return in[:n]
}

//go:wasmexport init
func initPolicy(ptr, n int32) int32 {
	if registered == nil {
		return 1
	}
	var cfg []byte
	if n > 0 {
		cfg = input(ptr, n)
		if cfg == nil {
			return 2
		}
		cfg = append([]byte(nil), cfg...)
	}
	if err := registered.Init(cfg); err != nil {
		return 3
	}
	return 0
}

//go:wasmexport decide
func decide(ptr, n int32) int64 {
	b := input(ptr, n)
	if b == nil || registered == nil {
		return 0
	}
	h, err := abi.ParseDecideHeader(b)
	if err != nil {
		return 0
	}
	size := int(h.Count) * abi.DecisionSize
	if cap(out) < size {
		out = make([]byte, size)
	}
	out = out[:size]
	var s abi.SampleMeta
	for i := 0; i < int(h.Count); i++ {
		abi.GetSampleMeta(b, i, &s)
		d := registered.Decide(&h, &s)
		abi.PutDecision(out[i*abi.DecisionSize:], &d)
	}
	return int64(abi.Pack(addr(out[:cap(out)]), uint32(size)))
}

//go:wasmexport mix
func mix(ptr, n int32) int64 {
	b := input(ptr, n)
	if b == nil || registered == nil {
		return 0
	}
	if err := abi.ParseMixInput(b, &stats); err != nil {
		return 0
	}
	p := registered.Mix(&stats)
	if cap(out) < abi.MixOutputSize {
		out = make([]byte, abi.MixOutputSize)
	}
	out = out[:abi.MixOutputSize]
	abi.PutProportions(out, &p)
	return int64(abi.Pack(addr(out[:cap(out)]), abi.MixOutputSize))
}

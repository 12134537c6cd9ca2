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
	metas []abi.SampleMeta
	decs  []abi.Decision
)

// ViewDecider is optionally implemented by a Policy to decide a whole
// batch in one call through an abi.DecideView, reading only the fields it
// needs and writing decisions in place. In a Go wasm guest every call and
// memory operation is dear, so this is several times faster than one
// Decide call per decoded record. It must give the same answers as Decide.
// Beware of embedding: a policy that embeds a type with DecideView (such
// as recipe.JointReplay) and overrides Decide must override DecideView
// too, or the promoted DecideView runs instead of its Decide.
type ViewDecider interface {
	DecideView(h *abi.DecideHeader, v *abi.DecideView)
}

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
	if vd, ok := registered.(ViewDecider); ok {
		v, err := abi.NewDecideView(b, out)
		if err != nil {
			return 0
		}
		vd.DecideView(&h, &v)
	} else {
		decodeDecide(&h, b, out)
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

// decodeDecide runs the policy over the records of b and writes the
// decisions to out. It reads and writes with plain (unaligned) wasm loads
// and stores instead of abi's byte-wise helpers: the Go wasm backend does
// not combine byte loads, and this loop is the policy's hot path (the
// layout is the one abi.GetSampleMeta and abi.PutDecision document; wasm
// is little-endian like the ABI).
func decodeDecide(h *abi.DecideHeader, b, out []byte) {
	n := int(h.Count)
	if cap(metas) < n {
		metas = make([]abi.SampleMeta, n)
		decs = make([]abi.Decision, n)
	}
	metas, decs = metas[:n], decs[:n]
	base := unsafe.Pointer(unsafe.SliceData(b))
	for i := range metas {
		r := unsafe.Add(base, abi.DecideHeaderSize+i*abi.SampleMetaSize)
		s := &metas[i]
		s.IDHash = *(*uint64)(r)
		s.Seq = *(*uint64)(unsafe.Add(r, 8))
		s.Rand = *(*uint64)(unsafe.Add(r, 16))
		s.TaskHash = *(*uint64)(unsafe.Add(r, 24))
		s.Tokens = *(*uint32)(unsafe.Add(r, 32))
		s.Bytes = *(*uint32)(unsafe.Add(r, 36))
		s.Kind = *(*uint8)(unsafe.Add(r, 40))
		s.Bucket = *(*uint8)(unsafe.Add(r, 41))
	}
	p := registered
	for i := range metas {
		decs[i] = p.Decide(h, &metas[i])
	}
	outp := unsafe.Pointer(unsafe.SliceData(out))
	for i := range decs {
		d := &decs[i]
		o := unsafe.Add(outp, i*abi.DecisionSize)
		var keep, flags uint32
		if d.Keep {
			keep = 1
		}
		if d.Replayable {
			flags = uint32(abi.DecisionReplayable)
		}
		*(*uint32)(o) = keep | uint32(d.Bucket)<<8 | flags<<16
		*(*float32)(unsafe.Add(o, 4)) = d.Weight
		*(*float32)(unsafe.Add(o, 8)) = d.ReplayWeight
	}
}

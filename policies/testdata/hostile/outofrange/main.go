//go:build wasip1

// Command outofrange is a hostile policy whose answers are malformed; the
// config (one word, passed to init) picks how:
//
//	bucket    a decision names bucket 7
//	nan       a weight is NaN
//	negative  a weight is -1
//	huge      a weight is 1e9
//	keep      keep = 2
//	short     decide answers one record too few
//	sum       mix proportions sum to 0.5
//	negmix    a proportion is negative
//	mixlen    mix answers 16 bytes
//	wild      decide answers a pointer outside memory
package main

import (
	"math"
	"unsafe"

	"replayd/policies/abi"
)

var (
	mode string
	in   = make([]byte, 1<<20)
	out  = make([]byte, 1<<20)
)

func addr(b []byte) uint32 { return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

//go:wasmexport abi_version
func abiVersion() int32 { return abi.Version }

//go:wasmexport alloc
func alloc(n int32) int32 {
	if int(n) > len(in) {
		in = make([]byte, n)
	}
	return int32(addr(in))
}

//go:wasmexport init
func initPolicy(ptr, n int32) int32 {
	mode = string(in[:n])
	return 0
}

//go:wasmexport decide
func decide(ptr, n int32) int64 {
	h, err := abi.ParseDecideHeader(in[:n])
	if err != nil {
		return 0
	}
	c := int(h.Count)
	for i := range c {
		d := abi.Decision{Keep: true, Bucket: uint8(i % 4), Weight: 1, ReplayWeight: 1}
		abi.PutDecision(out[i*abi.DecisionSize:], &d)
	}
	last := out[(c-1)*abi.DecisionSize:]
	switch mode {
	case "bucket":
		last[1] = 7
	case "nan":
		copy(last[4:8], f32(float32(math.NaN())))
	case "negative":
		copy(last[4:8], f32(-1))
	case "huge":
		copy(last[8:12], f32(1e9))
	case "keep":
		last[0] = 2
	case "short":
		return int64(abi.Pack(addr(out), uint32((c-1)*abi.DecisionSize)))
	case "wild":
		return int64(abi.Pack(0xfffff000, uint32(c*abi.DecisionSize)))
	}
	return int64(abi.Pack(addr(out), uint32(c*abi.DecisionSize)))
}

func f32(v float32) []byte {
	b := make([]byte, 4)
	u := math.Float32bits(v)
	b[0], b[1], b[2], b[3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	return b
}

//go:wasmexport mix
func mix(ptr, n int32) int64 {
	p := [abi.NumSlots]float32{0: 0.5, 4: 0.5}
	switch mode {
	case "sum":
		p[4] = 0
	case "negmix":
		p[0], p[4] = -0.5, 1.5
	}
	abi.PutProportions(out, &p)
	if mode == "mixlen" {
		return int64(abi.Pack(addr(out), 16))
	}
	return int64(abi.Pack(addr(out), abi.MixOutputSize))
}

func main() {}

//go:build !wasm

package abi

import "math"

func load64(b []byte, off int) uint64 { return le.Uint64(b[off:]) }

func load32(b []byte, off int) uint32 { return le.Uint32(b[off:]) }

// store96 writes a decision record: w, then two float32s.
func store96(b []byte, off int, w uint32, f1, f2 float32) {
	_ = b[off+11]
	le.PutUint32(b[off:], w)
	le.PutUint32(b[off+4:], math.Float32bits(f1))
	le.PutUint32(b[off+8:], math.Float32bits(f2))
}

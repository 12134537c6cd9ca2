//go:build wasm

package abi

import "unsafe"

// On wasm (little-endian, unaligned access allowed) single loads and
// stores replace encoding/binary's byte-wise code, which the Go wasm
// backend does not combine. The &b[off] bounds check guards the start; the
// callers' offsets lie inside a validated record, so the end is in range.

func load64(b []byte, off int) uint64 { return *(*uint64)(unsafe.Pointer(&b[off])) }

func load32(b []byte, off int) uint32 { return *(*uint32)(unsafe.Pointer(&b[off])) }

// store96 writes a decision record: w, then two float32s.
func store96(b []byte, off int, w uint32, f1, f2 float32) {
	_ = b[off+11] // the output has no record structure to rely on: check the end
	p := unsafe.Pointer(&b[off])
	*(*uint32)(p) = w
	*(*float32)(unsafe.Add(p, 4)) = f1
	*(*float32)(unsafe.Add(p, 8)) = f2
}

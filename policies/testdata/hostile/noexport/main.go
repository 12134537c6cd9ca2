//go:build wasip1

// Command noexport is a hostile policy: it has no mix export.
package main

//go:wasmexport abi_version
func abiVersion() int32 { return 1 }

var buf = make([]byte, 1<<16)

//go:wasmexport alloc
func alloc(int32) int32 { return 0 }

//go:wasmexport decide
func decide(int32, int32) int64 { return 0 }

func main() { _ = buf }

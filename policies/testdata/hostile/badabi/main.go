//go:build wasip1

// Command badabi is a hostile policy: it claims an ABI version the host
// does not speak.
package main

//go:wasmexport abi_version
func abiVersion() int32 { return 99 }

//go:wasmexport alloc
func alloc(int32) int32 { return 0 }

//go:wasmexport decide
func decide(int32, int32) int64 { return 0 }

//go:wasmexport mix
func mix(int32, int32) int64 { return 0 }

func main() {}

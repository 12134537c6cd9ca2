//go:build cuda

package gpu

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

// cuBLAS is reached through dlopen so the binary has no link-time
// dependency on one toolkit's libcublas.so.N (a CUDA 11.8 link would need
// libcublas.so.11 with its symbol versions, absent where only CUDA 13 is
// installed). The v2 entry points below have had the same C ABI since
// CUDA 11; handles and streams are opaque pointers, enums are ints.
typedef int (*rd_create_t)(void**);
typedef int (*rd_destroy_t)(void*);
typedef int (*rd_setstream_t)(void*, void*);
typedef int (*rd_gemmex_t)(void*, int, int, int, int, int, const void*, const void*, int, int,
                           const void*, int, int, const void*, void*, int, int, int, int);

static void* rd_dlopen(const char* p) { return dlopen(p, RTLD_NOW | RTLD_LOCAL); }
static void* rd_dlsym(void* h, const char* s) { return dlsym(h, s); }
static int rd_dlclose(void* h) { return dlclose(h); }
static const char* rd_dlerror(void) { return dlerror(); }

static int rd_create(void* f, void** h) { return ((rd_create_t)f)(h); }
static int rd_destroy(void* f, void* h) { return ((rd_destroy_t)f)(h); }
static int rd_setstream(void* f, void* h, void* s) { return ((rd_setstream_t)f)(h, s); }

// rd_sgemm calls cublasGemmEx with float32 A, B, C (CUDA_R_32F = 0),
// host-side alpha/beta and the default algorithm (-1).
static int rd_sgemm(void* f, void* h, int ta, int tb, int m, int n, int k, float alpha, uint64_t A, int lda,
                    uint64_t B, int ldb, float beta, uint64_t C, int ldc, int computeType) {
	return ((rd_gemmex_t)f)(h, ta, tb, m, n, k, &alpha, (const void*)A, 0, lda, (const void*)B, 0, ldb, &beta,
	                        (void*)C, 0, ldc, computeType, -1);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"gorgonia.org/cu"
)

// cuBLAS enum values (cublas_api.h, stable since CUDA 11).
const (
	cublasOpN              = 0
	cublasOpT              = 1
	cublasCompute32F       = 68
	cublasCompute32FFast16 = 75 // CUBLAS_COMPUTE_32F_FAST_16BF
	cublasCompute32FTF32   = 77 // CUBLAS_COMPUTE_32F_FAST_TF32
)

// cublas is a handle on a dlopen'ed libcublas bound to the backend's stream.
type cublas struct {
	lib, handle                unsafe.Pointer
	create, destroy, setStream unsafe.Pointer
	gemmEx                     unsafe.Pointer
	soname                     string
}

// loadCuBLAS opens the first library of candidates that has the needed
// symbols, creates a handle in the current context and binds it to stream.
func loadCuBLAS(candidates []string, stream unsafe.Pointer) (*cublas, error) {
	var reasons []string
	for _, name := range candidates {
		cb, err := openCuBLAS(name)
		if err != nil {
			reasons = append(reasons, err.Error())
			continue
		}
		if err := cb.init(stream); err != nil {
			C.rd_dlclose(cb.lib)
			reasons = append(reasons, err.Error())
			continue
		}
		return cb, nil
	}
	return nil, errors.New("gpu: no usable cuBLAS: " + strings.Join(reasons, "; "))
}

func openCuBLAS(name string) (*cublas, error) {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	lib := C.rd_dlopen(cs)
	if lib == nil {
		return nil, fmt.Errorf("dlopen %s: %s", name, C.GoString(C.rd_dlerror()))
	}
	cb := &cublas{lib: lib, soname: name}
	for _, s := range []struct {
		sym string
		dst *unsafe.Pointer
	}{
		{"cublasCreate_v2", &cb.create}, {"cublasDestroy_v2", &cb.destroy},
		{"cublasSetStream_v2", &cb.setStream}, {"cublasGemmEx", &cb.gemmEx},
	} {
		cs := C.CString(s.sym)
		*s.dst = C.rd_dlsym(lib, cs)
		C.free(unsafe.Pointer(cs))
		if *s.dst == nil {
			C.rd_dlclose(lib)
			return nil, fmt.Errorf("%s: no symbol %s", name, s.sym)
		}
	}
	return cb, nil
}

func (cb *cublas) init(stream unsafe.Pointer) error {
	var h unsafe.Pointer
	if st := C.rd_create(cb.create, &h); st != 0 {
		return fmt.Errorf("%s: cublasCreate: status %d", cb.soname, int(st))
	}
	cb.handle = h
	if st := C.rd_setstream(cb.setStream, h, stream); st != 0 {
		C.rd_destroy(cb.destroy, h)
		return fmt.Errorf("%s: cublasSetStream: status %d", cb.soname, int(st))
	}
	return nil
}

func (cb *cublas) close() error {
	var err error
	if st := C.rd_destroy(cb.destroy, cb.handle); st != 0 {
		err = fmt.Errorf("%s: cublasDestroy: status %d", cb.soname, int(st))
	}
	// The library stays loaded: unloading cuBLAS while the runtime it
	// started is alive is not supported by NVIDIA.
	return err
}

// sgemm computes the row-major C[m,n] = alpha·op(A)·op(B) + beta·C. cuBLAS
// is column-major, and a row-major matrix read column-major is its
// transpose, so it computes Cᵀ = op(B)ᵀ·op(A)ᵀ with the operands swapped.
func (cb *cublas) sgemm(tA, tB bool, m, n, k int, alpha float32, a cu.DevicePtr, lda int, b cu.DevicePtr, ldb int,
	beta float32, c cu.DevicePtr, ldc int, compute int) error {
	op := func(t bool) C.int {
		if t {
			return cublasOpT
		}
		return cublasOpN
	}
	st := C.rd_sgemm(cb.gemmEx, cb.handle, op(tB), op(tA), C.int(n), C.int(m), C.int(k), C.float(alpha),
		C.uint64_t(b), C.int(ldb), C.uint64_t(a), C.int(lda), C.float(beta), C.uint64_t(c), C.int(ldc), C.int(compute))
	if st != 0 {
		return fmt.Errorf("cublasGemmEx(m=%d n=%d k=%d): status %d", m, n, k, int(st))
	}
	return nil
}

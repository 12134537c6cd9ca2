//go:build openblas && cgo

package model

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
*/
import "C"

import "sync"

// gemmImpl names the GEMM this binary was built with.
const gemmImpl = "openblas"

var blasOnce sync.Once

// initGEMM pins OpenBLAS to one thread: the CPU backend splits every GEMM
// over its own goroutines, so letting OpenBLAS spawn threads as well would
// oversubscribe the cores and make results depend on its partitioning.
func initGEMM() { blasOnce.Do(func() { C.openblas_set_num_threads(1) }) }

// sgemm is C = alpha·op(A)·op(B) + beta·C, row-major, single-threaded.
func sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	ta, tb := uint32(C.CblasNoTrans), uint32(C.CblasNoTrans)
	if tA {
		ta = uint32(C.CblasTrans)
	}
	if tB {
		tb = uint32(C.CblasTrans)
	}
	C.cblas_sgemm(C.CblasRowMajor, C.enum_CBLAS_TRANSPOSE(ta), C.enum_CBLAS_TRANSPOSE(tb), C.blasint(m), C.blasint(n), C.blasint(k),
		C.float(alpha), (*C.float)(&a[0]), C.blasint(lda), (*C.float)(&b[0]), C.blasint(ldb), C.float(beta), (*C.float)(&c[0]), C.blasint(ldc))
}

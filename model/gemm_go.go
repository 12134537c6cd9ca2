//go:build !openblas || !cgo

package model

// gemmImpl names the GEMM this binary was built with.
const gemmImpl = "go"

func initGEMM() {}

// sgemm is C = alpha·op(A)·op(B) + beta·C, row-major, single-threaded.
func sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmGo(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

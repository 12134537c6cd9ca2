package model

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkGEMM reports GFLOP/s of the backend GEMM (OpenBLAS with the
// openblas tag) and of the pure-Go kernel, one thread and split over the
// backend's workers, on the shapes of the small preset's MLP.
func BenchmarkGEMM(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	const m, n, k = 2048, 768, 256
	a, w, c := randSlice(rng, m*k, 1), randSlice(rng, n*k, 1), make([]float32, m*n)
	flops := 2.0 * m * n * k
	for _, threads := range []int{1, 2} {
		be := NewCPUBackend(threads)
		b.Run(fmt.Sprintf("%s/threads=%d", gemmImpl, threads), func(b *testing.B) {
			for b.Loop() {
				be.gemmPar(false, true, m, n, k, 1, a, k, w, k, 0, c, n)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
	b.Run("purego/threads=1", func(b *testing.B) {
		for b.Loop() {
			sgemmGo(false, true, m, n, k, 1, a, k, w, k, 0, c, n)
		}
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}

// TestGEMMAgreesWithPureGo: the linked GEMM and the fallback compute the
// same products (to float32 rounding) for every transpose combination.
func TestGEMMAgreesWithPureGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
		m, n, k := 37, 29, 41
		a, bb := randSlice(rng, m*k, 1), randSlice(rng, k*n, 1)
		lda, ldb := k, n
		if tr[0] {
			lda = m
		}
		if tr[1] {
			ldb = k
		}
		c0 := randSlice(rng, m*n, 1)
		c1, c2 := append([]float32(nil), c0...), append([]float32(nil), c0...)
		sgemm(tr[0], tr[1], m, n, k, 0.5, a, lda, bb, ldb, 1, c1, n)
		sgemmGo(tr[0], tr[1], m, n, k, 0.5, a, lda, bb, ldb, 1, c2, n)
		// Reference in float64.
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s float64
				for p := 0; p < k; p++ {
					var av, bv float32
					if tr[0] {
						av = a[p*lda+i]
					} else {
						av = a[i*lda+p]
					}
					if tr[1] {
						bv = bb[j*ldb+p]
					} else {
						bv = bb[p*ldb+j]
					}
					s += float64(av) * float64(bv)
				}
				want := 0.5*s + float64(c0[i*n+j])
				for _, got := range []float32{c1[i*n+j], c2[i*n+j]} {
					if d := float64(got) - want; d > 1e-4 || d < -1e-4 {
						t.Fatalf("trans %v: C[%d,%d] = %v, want %v", tr, i, j, got, want)
					}
				}
			}
		}
	}
}

package model

// scaleC computes C *= beta (C = 0 when beta is 0, so NaNs are cleared as BLAS does).
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
}

// Block sizes of the pure-Go GEMM: a kc×nc panel of B (64 KiB) stays in L2
// while every row of A streams over it.
const (
	gemmKC = 128
	gemmNC = 512
)

// sgemmGo is the portable GEMM used without OpenBLAS: blocked over k and n
// so the panel of B is reused from cache, with unrolled axpy/dot kernels.
// The accumulation order over k is fixed (ascending), so results do not
// depend on how callers split M or N.
func sgemmGo(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	scaleC(m, n, beta, c, ldc)
	if m == 0 || n == 0 || k == 0 {
		return
	}
	switch {
	case !tB:
		for j0 := 0; j0 < n; j0 += gemmNC {
			j1 := min(j0+gemmNC, n)
			for p0 := 0; p0 < k; p0 += gemmKC {
				p1 := min(p0+gemmKC, k)
				for i := 0; i < m; i++ {
					crow := c[i*ldc+j0 : i*ldc+j1]
					p := p0
					for ; p+4 <= p1; p += 4 {
						var a0, a1, a2, a3 float32
						if tA {
							a0, a1, a2, a3 = a[p*lda+i], a[(p+1)*lda+i], a[(p+2)*lda+i], a[(p+3)*lda+i]
						} else {
							r := a[i*lda+p : i*lda+p+4]
							a0, a1, a2, a3 = r[0], r[1], r[2], r[3]
						}
						axpy4(alpha*a0, alpha*a1, alpha*a2, alpha*a3,
							b[p*ldb+j0:p*ldb+j1], b[(p+1)*ldb+j0:(p+1)*ldb+j1], b[(p+2)*ldb+j0:(p+2)*ldb+j1], b[(p+3)*ldb+j0:(p+3)*ldb+j1], crow)
					}
					for ; p < p1; p++ {
						var ap float32
						if tA {
							ap = a[p*lda+i]
						} else {
							ap = a[i*lda+p]
						}
						axpy1(alpha*ap, b[p*ldb+j0:p*ldb+j1], crow)
					}
				}
			}
		}
	case !tA:
		for i := 0; i < m; i++ {
			arow := a[i*lda : i*lda+k]
			crow := c[i*ldc : i*ldc+n]
			j := 0
			for ; j+4 <= n; j += 4 {
				s0, s1, s2, s3 := dot4(arow, b[j*ldb:j*ldb+k], b[(j+1)*ldb:(j+1)*ldb+k], b[(j+2)*ldb:(j+2)*ldb+k], b[(j+3)*ldb:(j+3)*ldb+k])
				crow[j] += alpha * s0
				crow[j+1] += alpha * s1
				crow[j+2] += alpha * s2
				crow[j+3] += alpha * s3
			}
			for ; j < n; j++ {
				crow[j] += alpha * dot1(arow, b[j*ldb:j*ldb+k])
			}
		}
	default: // Aᵀ·Bᵀ: not used by the model; kept correct and simple.
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s float32
				for p := 0; p < k; p++ {
					s += a[p*lda+i] * b[j*ldb+p]
				}
				c[i*ldc+j] += alpha * s
			}
		}
	}
}

func axpy1(a float32, x, y []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}

// axpy4 computes y += a0 x0 + a1 x1 + a2 x2 + a3 x3 in one pass over y,
// a quarter of the loads and stores of four axpys.
func axpy4(a0, a1, a2, a3 float32, x0, x1, x2, x3, y []float32) {
	n := len(y)
	x0, x1, x2, x3 = x0[:n], x1[:n], x2[:n], x3[:n]
	for i := range y {
		y[i] += a0*x0[i] + a1*x1[i] + a2*x2[i] + a3*x3[i]
	}
}

func dot1(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// dot4 computes four dot products of x with y0..y3, loading x once.
func dot4(x, y0, y1, y2, y3 []float32) (float32, float32, float32, float32) {
	n := len(x)
	y0, y1, y2, y3 = y0[:n], y1[:n], y2[:n], y3[:n]
	var s0, s1, s2, s3 float32
	for i, xv := range x {
		s0 += xv * y0[i]
		s1 += xv * y1[i]
		s2 += xv * y2[i]
		s3 += xv * y3[i]
	}
	return s0, s1, s2, s3
}

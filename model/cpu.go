package model

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// CPUBackend is the float32 CPU implementation of Backend. Work is split
// into tasks whose outputs are disjoint and whose reductions run in a fixed
// order inside one task, so results are bit-identical whatever the
// goroutine scheduling (for a given thread count). Each call waits for all
// the goroutines it starts.
type CPUBackend struct {
	threads int
	// scratch holds one attention buffer per worker, grown on demand.
	scratch [][]float32
}

// NewCPUBackend returns a CPU backend using threads goroutines per
// operation; threads <= 0 means runtime.GOMAXPROCS(0).
func NewCPUBackend(threads int) *CPUBackend {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	initGEMM()
	return &CPUBackend{threads: threads, scratch: make([][]float32, threads)}
}

type cpuTensor struct{ d []float32 }

func (t *cpuTensor) Len() int { return len(t.d) }

type cpuIntTensor struct{ d []int32 }

func (t *cpuIntTensor) Len() int { return len(t.d) }

func f(t Tensor) []float32 { return t.(*cpuTensor).d }

func fi(t IntTensor) []int32 { return t.(*cpuIntTensor).d }

// Name implements Backend.
func (c *CPUBackend) Name() string { return "cpu/" + gemmImpl }

// Threads implements Backend.
func (c *CPUBackend) Threads() int { return c.threads }

// Alloc implements Backend.
func (c *CPUBackend) Alloc(n int) Tensor { return &cpuTensor{d: make([]float32, n)} }

// AllocInt implements Backend.
func (c *CPUBackend) AllocInt(n int) IntTensor { return &cpuIntTensor{d: make([]int32, n)} }

// View implements Backend.
func (c *CPUBackend) View(t Tensor, off, n int) Tensor {
	return &cpuTensor{d: f(t)[off : off+n : off+n]}
}

// Free implements Backend; the garbage collector reclaims CPU memory.
func (c *CPUBackend) Free(t Tensor) {}

// FreeInt implements Backend: Go's heap holds the memory.
func (c *CPUBackend) FreeInt(t IntTensor) {}

// Upload implements Backend.
func (c *CPUBackend) Upload(dst Tensor, src []float32) {
	mustLen(dst.Len(), len(src))
	copy(f(dst), src)
}

// Download implements Backend.
func (c *CPUBackend) Download(dst []float32, src Tensor) {
	mustLen(len(dst), src.Len())
	copy(dst, f(src))
}

// UploadInt implements Backend.
func (c *CPUBackend) UploadInt(dst IntTensor, src []int32) {
	mustLen(dst.Len(), len(src))
	copy(fi(dst), src)
}

func mustLen(a, b int) {
	if a != b {
		panic(fmt.Sprintf("model: tensor length %d != %d", a, b))
	}
}

// parallel runs fn over [0,n) split into at most c.threads contiguous
// chunks, and returns when all are done.
func (c *CPUBackend) parallel(n int, fn func(worker, lo, hi int)) {
	w := min(c.threads, n)
	if w <= 1 {
		if n > 0 {
			fn(0, 0, n)
		}
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < w; i++ {
		lo, hi := n*i/w, n*(i+1)/w
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, lo, hi)
		}()
	}
	wg.Wait()
}

// Zero implements Backend.
func (c *CPUBackend) Zero(t Tensor) { clear(f(t)) }

// Copy implements Backend.
func (c *CPUBackend) Copy(dst, src Tensor) { mustLen(dst.Len(), src.Len()); copy(f(dst), f(src)) }

// Axpy implements Backend.
func (c *CPUBackend) Axpy(dst Tensor, a float32, src Tensor) {
	d, s := f(dst), f(src)
	mustLen(len(d), len(s))
	c.parallel(len(d), func(_, lo, hi int) { axpy1(a, s[lo:hi], d[lo:hi]) })
}

// Scale implements Backend.
func (c *CPUBackend) Scale(t Tensor, s float32) {
	d := f(t)
	c.parallel(len(d), func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] *= s
		}
	})
}

// sumBlock fixes the reduction tree of SumSquares independently of threads.
const sumBlock = 4096

// SumSquares implements Backend.
func (c *CPUBackend) SumSquares(ts ...Tensor) float64 {
	var ss float64
	for _, t := range ts {
		ss += c.sumSquares(t)
	}
	return ss
}

func (c *CPUBackend) sumSquares(t Tensor) float64 {
	d := f(t)
	nb := (len(d) + sumBlock - 1) / sumBlock
	part := make([]float64, nb)
	c.parallel(nb, func(_, lo, hi int) {
		for b := lo; b < hi; b++ {
			var s float64
			for _, v := range d[b*sumBlock : min((b+1)*sumBlock, len(d))] {
				s += float64(v) * float64(v)
			}
			part[b] = s
		}
	})
	var s float64
	for _, p := range part {
		s += p
	}
	return s
}

// Embedding implements Backend.
func (c *CPUBackend) Embedding(out, table Tensor, tokens IntTensor, rows, dim int) {
	o, tb, tk := f(out), f(table), fi(tokens)
	c.parallel(rows, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			t := int(tk[i])
			copy(o[i*dim:(i+1)*dim], tb[t*dim:(t+1)*dim])
		}
	})
}

// EmbeddingBackward implements Backend. Workers own column ranges and walk
// the rows in order, so repeated tokens accumulate in a fixed order.
func (c *CPUBackend) EmbeddingBackward(dtable, dout Tensor, tokens IntTensor, rows, dim int) {
	dt, do, tk := f(dtable), f(dout), fi(tokens)
	c.parallel(dim, func(_, lo, hi int) {
		for i := 0; i < rows; i++ {
			t := int(tk[i])
			axpy1(1, do[i*dim+lo:i*dim+hi], dt[t*dim+lo:t*dim+hi])
		}
	})
}

// RMSNorm implements Backend. The mean square is accumulated in float64
// (torch accumulates float32 sums pairwise, so both are within an ulp or so).
func (c *CPUBackend) RMSNorm(out, rstd, x, w Tensor, rows, dim int, eps float32) {
	o, r, xs, ws := f(out), f(rstd), f(x), f(w)
	c.parallel(rows, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			row := xs[i*dim : (i+1)*dim]
			var ss float64
			for _, v := range row {
				ss += float64(v) * float64(v)
			}
			rs := float32(1 / math.Sqrt(float64(float32(ss/float64(dim))+eps)))
			r[i] = rs
			orow := o[i*dim : (i+1)*dim]
			for j, v := range row {
				orow[j] = ws[j] * (v * rs)
			}
		}
	})
}

// RMSNormBackward implements Backend.
func (c *CPUBackend) RMSNormBackward(dx, dw, dout, x, w, rstd Tensor, rows, dim int) {
	dxs, dws, dos, xs, ws, r := f(dx), f(dw), f(dout), f(x), f(w), f(rstd)
	c.parallel(rows, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			xr, dr, dxr := xs[i*dim:(i+1)*dim], dos[i*dim:(i+1)*dim], dxs[i*dim:(i+1)*dim]
			rs := r[i]
			// dx = rs*(w*dout) - rs³/dim * x * Σ(w*dout*x)
			var dot float64
			for j := range xr {
				dot += float64(ws[j]*dr[j]) * float64(xr[j])
			}
			k := float32(dot) * rs * rs * rs / float32(dim)
			for j := range xr {
				dxr[j] += rs*(ws[j]*dr[j]) - k*xr[j]
			}
		}
	})
	c.parallel(dim, func(_, lo, hi int) {
		for i := 0; i < rows; i++ {
			xr, dr, rs := xs[i*dim:(i+1)*dim], dos[i*dim:(i+1)*dim], r[i]
			for j := lo; j < hi; j++ {
				dws[j] += dr[j] * (xr[j] * rs)
			}
		}
	})
}

// RoPE implements Backend.
func (c *CPUBackend) RoPE(x Tensor, pos IntTensor, cos, sin Tensor, rows, heads, headDim int, inverse bool) {
	xs, ps, cs, sn := f(x), fi(pos), f(cos), f(sin)
	half := headDim / 2
	c.parallel(rows, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			p := int(ps[i])
			cr, sr := cs[p*half:(p+1)*half], sn[p*half:(p+1)*half]
			for h := 0; h < heads; h++ {
				v := xs[(i*heads+h)*headDim : (i*heads+h+1)*headDim]
				for j := 0; j < half; j++ {
					a, b := v[j], v[j+half]
					s := sr[j]
					if inverse {
						s = -s
					}
					// rotate_half: [a, b] -> [a cos - b sin, b cos + a sin]
					v[j] = a*cr[j] - b*s
					v[j+half] = b*cr[j] + a*s
				}
			}
		}
	})
}

// minParallelFlops is the GEMM size under which splitting costs more than it saves.
const minParallelFlops = 1 << 18

// gemmPar splits C along its larger dimension over the workers and runs a
// single-threaded sgemm per chunk; every C element is computed by one call.
func (c *CPUBackend) gemmPar(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
	if m*n*k < minParallelFlops || c.threads == 1 {
		sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, cc, ldc)
		return
	}
	if m >= n {
		// Chunks of whole rows, rounded to 8 so each worker keeps full micro-tiles.
		nb := (m + 7) / 8
		c.parallel(nb, func(_, lo, hi int) {
			i0, i1 := lo*8, min(hi*8, m)
			ao := i0 * lda
			if tA {
				ao = i0
			}
			sgemm(tA, tB, i1-i0, n, k, alpha, a[ao:], lda, b, ldb, beta, cc[i0*ldc:], ldc)
		})
		return
	}
	nb := (n + 7) / 8
	c.parallel(nb, func(_, lo, hi int) {
		j0, j1 := lo*8, min(hi*8, n)
		bo := j0
		if tB {
			bo = j0 * ldb
		}
		sgemm(tA, tB, m, j1-j0, k, alpha, a, lda, b[bo:], ldb, beta, cc[j0:], ldc)
	})
}

func beta(acc bool) float32 {
	if acc {
		return 1
	}
	return 0
}

// MatMul implements Backend.
func (c *CPUBackend) MatMul(out, x, w Tensor, rows, in, outDim int, accumulate bool) {
	c.gemmPar(false, true, rows, outDim, in, 1, f(x), in, f(w), in, beta(accumulate), f(out), outDim)
}

// MatMulDX implements Backend.
func (c *CPUBackend) MatMulDX(dx, dout, w Tensor, rows, in, outDim int, accumulate bool) {
	c.gemmPar(false, false, rows, in, outDim, 1, f(dout), outDim, f(w), in, beta(accumulate), f(dx), in)
}

// MatMulDW implements Backend.
func (c *CPUBackend) MatMulDW(dw, dout, x Tensor, rows, in, outDim int) {
	c.gemmPar(true, false, outDim, in, rows, 1, f(dout), outDim, f(x), in, 1, f(dw), in)
}

// attnBlock is the number of queries processed together: large enough for
// efficient GEMMs, small enough that causal blocks skip most masked keys.
const attnBlock = 64

func (c *CPUBackend) buf(worker, n int) []float32 {
	if cap(c.scratch[worker]) < n {
		c.scratch[worker] = make([]float32, n)
	}
	return c.scratch[worker][:n]
}

// attnScale is HF's 1/sqrt(head_dim), rounded once to float32.
func attnScale(hd int) float32 { return float32(1 / math.Sqrt(float64(hd))) }

// Attention implements Backend. One task per (sequence, kv head) owns its
// outputs; inside, queries go in blocks of attnBlock through two GEMMs.
func (c *CPUBackend) Attention(out, lse, q, k, v Tensor, qDoc, kDoc IntTensor, s AttnShape) {
	os, ls, qs, ks, vs, qd, kd := f(out), f(lse), f(q), f(k), f(v), fi(qDoc), fi(kDoc)
	hd, H, KV := s.HeadDim, s.Heads, s.KVHeads
	group := H / KV
	ldq, ldk := H*hd, KV*hd
	scale := attnScale(hd)
	tasks := s.B * KV
	c.parallel(tasks, func(worker, lo, hi int) {
		for task := lo; task < hi; task++ {
			b, kvh := task/KV, task%KV
			for t0 := 0; t0 < s.Tq; t0 += attnBlock {
				t1 := min(t0+attnBlock, s.Tq)
				nk := min(s.QOffset+t1, s.Tk)
				S := c.buf(worker, (t1-t0)*nk)
				for g := 0; g < group; g++ {
					h := kvh*group + g
					qb := qs[(b*s.Tq+t0)*ldq+h*hd:]
					kb := ks[(b*s.Tk)*ldk+kvh*hd:]
					vb := vs[(b*s.Tk)*ldk+kvh*hd:]
					sgemm(false, true, t1-t0, nk, hd, scale, qb, ldq, kb, ldk, 0, S, nk)
					for t := t0; t < t1; t++ {
						row := S[(t-t0)*nk : (t-t0+1)*nk]
						ls[(b*s.Tq+t)*H+h] = maskedSoftmax(row, kd[b*s.Tk:b*s.Tk+nk], qd[b*s.Tq+t], s.QOffset+t)
					}
					sgemm(false, false, t1-t0, hd, nk, 1, S, nk, vb, ldk, 0, os[(b*s.Tq+t0)*ldq+h*hd:], ldq)
				}
			}
		}
	})
}

// maskedSoftmax turns scores into probabilities in place, zeroing keys
// after qa or of another document, and returns the log-sum-exp.
func maskedSoftmax(row []float32, kd []int32, doc int32, qa int) float32 {
	mx := float32(math.Inf(-1))
	for j, v := range row {
		if j <= qa && kd[j] == doc && v > mx {
			mx = v
		}
	}
	var sum float64
	for j, v := range row {
		if j <= qa && kd[j] == doc {
			e := float32(math.Exp(float64(v - mx)))
			row[j] = e
			sum += float64(e)
		} else {
			row[j] = 0
		}
	}
	if sum == 0 { // no visible key (cannot happen for a query that sees itself)
		return mx
	}
	inv := float32(1 / sum)
	for j := range row {
		row[j] *= inv
	}
	return mx + float32(math.Log(sum))
}

// AttentionBackward implements Backend, recomputing the probabilities from
// the saved log-sum-exp (flash-attention style) instead of storing them.
func (c *CPUBackend) AttentionBackward(dq, dk, dv, dout, out, lse, q, k, v Tensor, qDoc, kDoc IntTensor, s AttnShape) {
	dqs, dks, dvs, dos, os, ls := f(dq), f(dk), f(dv), f(dout), f(out), f(lse)
	qs, ks, vs, qd, kd := f(q), f(k), f(v), fi(qDoc), fi(kDoc)
	hd, H, KV := s.HeadDim, s.Heads, s.KVHeads
	group := H / KV
	ldq, ldk := H*hd, KV*hd
	scale := attnScale(hd)
	c.parallel(s.B*KV, func(worker, lo, hi int) {
		for task := lo; task < hi; task++ {
			b, kvh := task/KV, task%KV
			for r := 0; r < s.Tk; r++ {
				clear(dks[(b*s.Tk+r)*ldk+kvh*hd : (b*s.Tk+r)*ldk+kvh*hd+hd])
				clear(dvs[(b*s.Tk+r)*ldk+kvh*hd : (b*s.Tk+r)*ldk+kvh*hd+hd])
			}
			for t0 := 0; t0 < s.Tq; t0 += attnBlock {
				t1 := min(t0+attnBlock, s.Tq)
				nb := t1 - t0
				nk := min(s.QOffset+t1, s.Tk)
				buf := c.buf(worker, 2*nb*nk)
				P, dP := buf[:nb*nk], buf[nb*nk:]
				for g := 0; g < group; g++ {
					h := kvh*group + g
					qo := (b*s.Tq+t0)*ldq + h*hd
					ko := (b*s.Tk)*ldk + kvh*hd
					sgemm(false, true, nb, nk, hd, scale, qs[qo:], ldq, ks[ko:], ldk, 0, P, nk)
					sgemm(false, true, nb, nk, hd, 1, dos[qo:], ldq, vs[ko:], ldk, 0, dP, nk)
					for t := t0; t < t1; t++ {
						i := t - t0
						pr, dpr := P[i*nk:(i+1)*nk], dP[i*nk:(i+1)*nk]
						l := ls[(b*s.Tq+t)*H+h]
						doc, qa := qd[b*s.Tq+t], s.QOffset+t
						orow := os[(b*s.Tq+t)*ldq+h*hd : (b*s.Tq+t)*ldq+h*hd+hd]
						drow := dos[(b*s.Tq+t)*ldq+h*hd : (b*s.Tq+t)*ldq+h*hd+hd]
						di := dot1(orow, drow)
						kdr := kd[b*s.Tk:]
						for j := range pr {
							if j <= qa && kdr[j] == doc {
								p := float32(math.Exp(float64(pr[j] - l)))
								pr[j] = p
								dpr[j] = p * (dpr[j] - di)
							} else {
								pr[j], dpr[j] = 0, 0
							}
						}
					}
					// dV += Pᵀ dO; dQ = scale dS K; dK += scale dSᵀ Q.
					sgemm(true, false, nk, hd, nb, 1, P, nk, dos[qo:], ldq, 1, dvs[ko:], ldk)
					sgemm(false, false, nb, hd, nk, scale, dP, nk, ks[ko:], ldk, 0, dqs[qo:], ldq)
					sgemm(true, false, nk, hd, nb, scale, dP, nk, qs[qo:], ldq, 1, dks[ko:], ldk)
				}
			}
		}
	})
}

func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

// SwiGLU implements Backend.
func (c *CPUBackend) SwiGLU(out, gate, up Tensor, n int) {
	o, g, u := f(out), f(gate), f(up)
	c.parallel(n, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			o[i] = g[i] * sigmoid(g[i]) * u[i]
		}
	})
}

// SwiGLUBackward implements Backend.
func (c *CPUBackend) SwiGLUBackward(dgate, dup, dout, gate, up Tensor, n int) {
	dg, du, do, g, u := f(dgate), f(dup), f(dout), f(gate), f(up)
	c.parallel(n, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			sg := sigmoid(g[i])
			silu := g[i] * sg
			du[i] = do[i] * silu
			dg[i] = do[i] * u[i] * sg * (1 + g[i]*(1-sg))
		}
	})
}

// CrossEntropy implements Backend.
func (c *CPUBackend) CrossEntropy(losses, logits Tensor, targets IntTensor, weights Tensor, rows, vocab int, gradScale float32, grad bool) {
	ls, lg, tg, ws := f(losses), f(logits), fi(targets), f(weights)
	c.parallel(rows, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			row := lg[i*vocab : (i+1)*vocab]
			t := int(tg[i])
			if t < 0 {
				ls[i] = 0
				if grad {
					clear(row)
				}
				continue
			}
			mx := row[0]
			for _, v := range row {
				mx = max(mx, v)
			}
			target := row[t]
			// One exp per logit: with grad the exponentials are kept in
			// the row and normalised afterwards (exp dominated this op).
			var sum float64
			if grad {
				for j, v := range row {
					e := math.Exp(float64(v - mx))
					row[j] = float32(e)
					sum += e
				}
			} else {
				for _, v := range row {
					sum += math.Exp(float64(v - mx))
				}
			}
			lse := float64(mx) + math.Log(sum)
			ls[i] = float32(lse - float64(target))
			if grad {
				w := ws[i] * gradScale
				scale := float32(1/sum) * w
				for j := range row {
					row[j] *= scale
				}
				row[t] -= w
			}
		}
	})
}

// AdamW implements Backend.
func (c *CPUBackend) AdamW(p, g, m, v Tensor, a AdamWParams) {
	ps, gs, ms, vs := f(p), f(g), f(m), f(v)
	// The (1-β) factors are rounded from float64 like torch's scalar
	// arguments, not computed in float32.
	b1, b2 := float32(a.Beta1), float32(a.Beta2)
	c1, c2 := float32(1-a.Beta1), float32(1-a.Beta2)
	decay := float32(1 - a.LR*a.WeightDecay)
	bc1 := 1 - math.Pow(a.Beta1, float64(a.Step))
	bc2 := 1 - math.Pow(a.Beta2, float64(a.Step))
	stepSize := float32(a.LR / bc1)
	bc2s := float32(math.Sqrt(bc2))
	eps := float32(a.Eps)
	c.parallel(len(ps), func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			gi := gs[i]
			ps[i] *= decay
			ms[i] = ms[i]*b1 + gi*c1
			vs[i] = vs[i]*b2 + c2*gi*gi
			denom := float32(math.Sqrt(float64(vs[i])))/bc2s + eps
			ps[i] += -stepSize * (ms[i] / denom)
		}
	})
}

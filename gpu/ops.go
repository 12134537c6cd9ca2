//go:build cuda

package gpu

import (
	"fmt"
	"math"
	"slices"
	"unsafe"

	"gorgonia.org/cu"

	"replayd/model"
)

// Zero implements model.Backend.
func (b *Backend) Zero(t model.Tensor) {
	p := dt(t)
	if p.n == 0 {
		return
	}
	defer b.enter()()
	check("Zero", cu.MemsetD32Async(p.ptr, 0, int64(p.n), b.stream))
}

// Copy implements model.Backend.
func (b *Backend) Copy(dst, src model.Tensor) {
	d, s := dt(dst), dt(src)
	mustLen("Copy", d.n, s.n)
	if d.n == 0 {
		return
	}
	defer b.enter()()
	check("Copy", cu.MemcpyDtoDAsync(d.ptr, s.ptr, int64(d.n)*4, b.stream))
}

// Axpy implements model.Backend.
func (b *Backend) Axpy(dst model.Tensor, a float32, src model.Tensor) {
	d, s := dt(dst), dt(src)
	mustLen("Axpy", d.n, s.n)
	defer b.enter()()
	b.launch("axpy_f32", gridFor(d.n), 256, 0, d.ptr, a, s.ptr, d.n)
}

// Scale implements model.Backend.
func (b *Backend) Scale(t model.Tensor, s float32) {
	d := dt(t)
	defer b.enter()()
	b.launch("scale_f32", gridFor(d.n), 256, 0, d.ptr, s, d.n)
}

// sumChunk is the number of elements per SumSquares partial: fixed, so the
// reduction tree (and the result) does not depend on the device.
const sumChunk = 4096

// SumSquares implements model.Backend: float64 partials per chunk on the
// device, every tensor's into one scratch buffer that comes back in one
// copy (the gradient norm waits for the device once per step, not once per
// tensor); the host adds them in chunk order, then in tensor order.
func (b *Backend) SumSquares(ts ...model.Tensor) float64 {
	counts := make([]int, len(ts))
	total := 0
	for i, t := range ts {
		counts[i] = (dt(t).n + sumChunk - 1) / sumChunk
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	defer b.enter()()
	part := b.scratchPtr(int64(total) * 8)
	off := 0
	for i, t := range ts {
		if d := dt(t); counts[i] > 0 {
			b.launch("sumsq_partial", dim3{counts[i], 1, 1}, 256, 0, d.ptr, d.n, sumChunk, part+cu.DevicePtr(off*8))
			off += counts[i]
		}
	}
	host := make([]float64, total)
	check("SumSquares: download", cu.MemcpyDtoHAsync(unsafe.Pointer(&host[0]), part, int64(total)*8, b.stream))
	check("SumSquares: synchronize", b.stream.Synchronize())
	var ss float64
	off = 0
	for _, c := range counts {
		var s float64
		for _, v := range host[off : off+c] {
			s += v
		}
		ss += s
		off += c
	}
	return ss
}

// Embedding implements model.Backend.
func (b *Backend) Embedding(out, table model.Tensor, tokens model.IntTensor, rows, dim int) {
	o, tb, tk := dt(out), dt(table), it(tokens)
	defer b.enter()()
	b.launch("embedding_fwd", dim3{rows, 1, 1}, min(256, roundWarp(dim)), 0, o.ptr, tb.ptr, tk.ptr, rows, dim)
}

// segments groups the rows of a token tensor by token: rows
// order[start[u]:start[u+1]] (ascending) hold token uniq[u]. The device
// copy is one buffer [uniq | start | order].
type segments struct {
	rows        int
	nuniq       int
	dev         cu.DevicePtr
	uniqOff     int64
	startOff    int64
	orderOff    int64
	deviceBytes int64
}

func (b *Backend) segmentsOf(tk *intTensor, rows int) *segments {
	if tk.seg != nil && tk.seg.rows == rows {
		return tk.seg
	}
	if tk.seg != nil {
		check("EmbeddingBackward: free segments", b.memFree(tk.seg.dev, tk.seg.deviceBytes))
		tk.seg = nil
	}
	uniq, start, order := buildSegments(tk.host[:rows])
	all := slices.Concat(uniq, start, order)
	s := &segments{rows: rows, nuniq: len(uniq), uniqOff: 0, startOff: int64(len(uniq)) * 4,
		orderOff: int64(len(uniq)+len(start)) * 4, deviceBytes: int64(len(all)) * 4}
	var err error
	s.dev, err = b.memAlloc(s.deviceBytes)
	check("EmbeddingBackward: allocate segments", err)
	// Synchronous copy: all is a Go slice that goes out of scope.
	check("EmbeddingBackward: upload segments", cu.MemcpyHtoDAsync(s.dev, unsafe.Pointer(&all[0]), s.deviceBytes, b.stream))
	tk.seg = s
	return s
}

// EmbeddingBackward implements model.Backend.
func (b *Backend) EmbeddingBackward(dtable, dout model.Tensor, tokens model.IntTensor, rows, dim int) {
	d, o, tk := dt(dtable), dt(dout), it(tokens)
	if rows == 0 {
		return
	}
	defer b.enter()()
	s := b.segmentsOf(tk, rows)
	bs := min(256, roundWarp(dim))
	b.launch("embedding_bwd", dim3{s.nuniq, (dim + bs - 1) / bs, 1}, bs, 0, d.ptr, o.ptr,
		s.dev+cu.DevicePtr(s.uniqOff), s.dev+cu.DevicePtr(s.startOff), s.dev+cu.DevicePtr(s.orderOff), dim)
}

func roundWarp(n int) int { return max(32, (n+31)/32*32) }

// RMSNorm implements model.Backend.
func (b *Backend) RMSNorm(out, rstd, x, w model.Tensor, rows, dim int, eps float32) {
	defer b.enter()()
	b.launch("rmsnorm_fwd", dim3{rows, 1, 1}, 256, 0, dt(out).ptr, dt(rstd).ptr, dt(x).ptr, dt(w).ptr, dim, eps)
}

// rmsRowsPer is the number of rows one dw partial sums (fixed for determinism).
const rmsRowsPer = 256

// RMSNormBackward implements model.Backend: dx row by row, dw through
// per-chunk column partials summed in chunk order.
func (b *Backend) RMSNormBackward(dx, dw, dout, x, w, rstd model.Tensor, rows, dim int) {
	if rows == 0 {
		return
	}
	defer b.enter()()
	b.launch("rmsnorm_bwd_dx", dim3{rows, 1, 1}, 256, 0, dt(dx).ptr, dt(dout).ptr, dt(x).ptr, dt(w).ptr, dt(rstd).ptr, dim)
	chunks := (rows + rmsRowsPer - 1) / rmsRowsPer
	part := b.scratchPtr(int64(chunks) * int64(dim) * 4)
	b.launch("rmsnorm_bwd_dw_partial", dim3{(dim + 255) / 256, chunks, 1}, 256, 0, part, dt(dout).ptr, dt(x).ptr,
		dt(rstd).ptr, rows, dim, rmsRowsPer)
	b.launch("colsum_acc", dim3{(dim + 255) / 256, 1, 1}, 256, 0, dt(dw).ptr, part, chunks, dim)
}

// RoPE implements model.Backend.
func (b *Backend) RoPE(x model.Tensor, pos model.IntTensor, cos, sin model.Tensor, rows, heads, headDim int, inverse bool) {
	defer b.enter()()
	b.launch("rope", dim3{rows, 1, 1}, min(256, roundWarp(heads*headDim/2)), 0, dt(x).ptr, it(pos).ptr, dt(cos).ptr,
		dt(sin).ptr, heads, headDim, inverse)
}

// gemm is the row-major C[m,n] = op(A)·op(B) (+ C when acc).
func (b *Backend) gemm(op string, tA, tB bool, m, n, k int, a cu.DevicePtr, lda int, bb cu.DevicePtr, ldb int, acc bool,
	c cu.DevicePtr, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	beta := float32(0)
	if acc {
		beta = 1
	}
	if k == 0 {
		if !acc {
			check(op+": zero", cu.MemsetD32Async(c, 0, int64(m*ldc), b.stream))
		}
		return
	}
	if b.blas != nil {
		compute := cublasCompute32F
		switch b.opts.Precision {
		case TF32:
			compute = cublasCompute32FTF32
		case BF16:
			compute = cublasCompute32FFast16
		}
		check(op, b.blas.sgemm(tA, tB, m, n, k, 1, a, lda, bb, ldb, beta, c, ldc, compute))
		return
	}
	b.launch("sgemm_tiled", dim3{(n + 63) / 64, (m + 63) / 64, 1}, 256, 0, tA, tB, m, n, k, float32(1), a, lda, bb, ldb,
		beta, c, ldc)
}

// MatMul implements model.Backend.
func (b *Backend) MatMul(out, x, w model.Tensor, rows, in, outDim int, accumulate bool) {
	defer b.enter()()
	b.gemm("MatMul", false, true, rows, outDim, in, dt(x).ptr, in, dt(w).ptr, in, accumulate, dt(out).ptr, outDim)
}

// MatMulDX implements model.Backend.
func (b *Backend) MatMulDX(dx, dout, w model.Tensor, rows, in, outDim int, accumulate bool) {
	defer b.enter()()
	b.gemm("MatMulDX", false, false, rows, in, outDim, dt(dout).ptr, outDim, dt(w).ptr, in, accumulate, dt(dx).ptr, in)
}

// MatMulDW implements model.Backend.
func (b *Backend) MatMulDW(dw, dout, x model.Tensor, rows, in, outDim int) {
	defer b.enter()()
	b.gemm("MatMulDW", true, false, outDim, in, rows, dt(dout).ptr, outDim, dt(x).ptr, in, true, dt(dw).ptr, in)
}

// attnBlock is the queries (forward, dQ) or keys (dK/dV) per block: AQ in
// kernels.cu.
const attnBlock = 64

func attnKernel(kind string, hd int) string {
	if !slices.Contains(headDims, hd) {
		panic(fmt.Sprintf("gpu: attention head_dim %d not compiled (kernels.cu instantiates %v)", hd, headDims))
	}
	return fmt.Sprintf("attn_%s_%d", kind, hd)
}

func attnScale(hd int) float32 { return float32(1 / math.Sqrt(float64(hd))) }

// tensorCoreHeadDim is the head size of the tensor-core kernels (attn_tc.cuh).
const tensorCoreHeadDim = 64

// TensorCoreAttention reports whether training's self-attention with head
// size headDim runs on the bf16 tensor-core kernels: in BF16 precision,
// unless Options.PlainAttention, at head size 64.
func (b *Backend) TensorCoreAttention(headDim int) bool {
	return b.opts.Precision == BF16 && !b.opts.PlainAttention && headDim == tensorCoreHeadDim
}

// tensorCores reports whether s runs on the tensor-core kernels: training's
// self-attention (no cache offset, as many keys as queries) where
// TensorCoreAttention says so.
func (b *Backend) tensorCores(s model.AttnShape) bool {
	return b.TensorCoreAttention(s.HeadDim) && s.QOffset == 0 && s.Tq == s.Tk
}

// Attention implements model.Backend.
func (b *Backend) Attention(out, lse, q, k, v model.Tensor, qDoc, kDoc model.IntTensor, s model.AttnShape) {
	if b.tensorCores(s) {
		defer b.enter()()
		b.launch("attn_fwd_tc64", dim3{(s.Tq + attnBlock - 1) / attnBlock, s.B * s.Heads, 1}, 128, 0, dt(out).ptr,
			dt(lse).ptr, dt(q).ptr, dt(k).ptr, dt(v).ptr, it(qDoc).ptr, it(kDoc).ptr, s.B, s.Tq, s.Heads, s.KVHeads,
			attnScale(s.HeadDim))
		return
	}
	name := attnKernel("fwd", s.HeadDim)
	defer b.enter()()
	b.launch(name, dim3{(s.Tq + attnBlock - 1) / attnBlock, s.B * s.Heads, 1}, attnBlock, 0, dt(out).ptr, dt(lse).ptr,
		dt(q).ptr, dt(k).ptr, dt(v).ptr, it(qDoc).ptr, it(kDoc).ptr, s.B, s.Tq, s.Tk, s.QOffset, s.Heads, s.KVHeads,
		attnScale(s.HeadDim))
}

// AttentionBackward implements model.Backend: D = rowsum(out·dout), then
// dQ with one thread per query and dK, dV with one thread per key, so each
// output has a single writer and a fixed summation order.
func (b *Backend) AttentionBackward(dq, dk, dv, dout, out, lse, q, k, v model.Tensor, qDoc, kDoc model.IntTensor, s model.AttnShape) {
	defer b.enter()()
	n := s.B * s.Tq * s.Heads
	D := b.scratchPtr(int64(n) * 4)
	b.launch("attn_delta", dim3{(n + 255) / 256, 1, 1}, 256, 0, D, dt(out).ptr, dt(dout).ptr, s.B*s.Tq, s.Heads, s.HeadDim)
	scale := attnScale(s.HeadDim)
	if b.tensorCores(s) {
		blocks := (s.Tq + attnBlock - 1) / attnBlock
		b.launch("attn_bwd_dq_tc64", dim3{blocks, s.B * s.Heads, 1}, 128, 0, dt(dq).ptr, dt(dout).ptr, dt(lse).ptr, D,
			dt(q).ptr, dt(k).ptr, dt(v).ptr, it(qDoc).ptr, it(kDoc).ptr, s.B, s.Tq, s.Heads, s.KVHeads, scale)
		b.launch("attn_bwd_dkv_tc64", dim3{blocks, s.B * s.KVHeads, 1}, 128, 0, dt(dk).ptr, dt(dv).ptr, dt(dout).ptr,
			dt(lse).ptr, D, dt(q).ptr, dt(k).ptr, dt(v).ptr, it(qDoc).ptr, it(kDoc).ptr, s.B, s.Tq, s.Heads, s.KVHeads,
			scale)
		return
	}
	nameQ, nameKV := attnKernel("bwd_dq", s.HeadDim), attnKernel("bwd_dkv", s.HeadDim)
	b.launch(nameQ, dim3{(s.Tq + attnBlock - 1) / attnBlock, s.B * s.Heads, 1}, attnBlock, 0, dt(dq).ptr, dt(dout).ptr,
		dt(lse).ptr, D, dt(q).ptr, dt(k).ptr, dt(v).ptr, it(qDoc).ptr, it(kDoc).ptr, s.B, s.Tq, s.Tk, s.QOffset, s.Heads,
		s.KVHeads, scale)
	b.launch(nameKV, dim3{(s.Tk + attnBlock - 1) / attnBlock, s.B * s.KVHeads, 1}, attnBlock, 0, dt(dk).ptr, dt(dv).ptr,
		dt(dout).ptr, dt(lse).ptr, D, dt(q).ptr, dt(k).ptr, dt(v).ptr, it(qDoc).ptr, it(kDoc).ptr, s.B, s.Tq, s.Tk,
		s.QOffset, s.Heads, s.KVHeads, scale)
}

// SwiGLU implements model.Backend.
func (b *Backend) SwiGLU(out, gate, up model.Tensor, n int) {
	defer b.enter()()
	b.launch("swiglu_fwd", gridFor(n), 256, 0, dt(out).ptr, dt(gate).ptr, dt(up).ptr, n)
}

// SwiGLUBackward implements model.Backend.
func (b *Backend) SwiGLUBackward(dgate, dup, dout, gate, up model.Tensor, n int) {
	defer b.enter()()
	b.launch("swiglu_bwd", gridFor(n), 256, 0, dt(dgate).ptr, dt(dup).ptr, dt(dout).ptr, dt(gate).ptr, dt(up).ptr, n)
}

// ceBlock is CE_BLOCK in kernels.cu (its shared-memory trees assume it).
const ceBlock = 1024

// CrossEntropy implements model.Backend: one fused kernel per row (max,
// log-sum-exp, loss and, with grad, the weighted softmax gradient in place).
func (b *Backend) CrossEntropy(losses, logits model.Tensor, targets model.IntTensor, weights model.Tensor, rows, vocab int,
	gradScale float32, grad bool) {
	defer b.enter()()
	b.launch("cross_entropy", dim3{rows, 1, 1}, ceBlock, 0, dt(losses).ptr, dt(logits).ptr, it(targets).ptr,
		dt(weights).ptr, vocab, gradScale, grad)
}

// AdamW implements model.Backend with the CPU backend's float32 scalars.
func (b *Backend) AdamW(p, g, m, v model.Tensor, a model.AdamWParams) {
	n := dt(p).n
	bc1 := 1 - math.Pow(a.Beta1, float64(a.Step))
	bc2 := 1 - math.Pow(a.Beta2, float64(a.Step))
	defer b.enter()()
	b.launch("adamw", gridFor(n), 256, 0, dt(p).ptr, dt(g).ptr, dt(m).ptr, dt(v).ptr, n,
		float32(a.Beta1), float32(a.Beta2), float32(1-a.Beta1), float32(1-a.Beta2), float32(1-a.LR*a.WeightDecay),
		float32(a.LR/bc1), float32(math.Sqrt(bc2)), float32(a.Eps))
}

package model

// Tensor is an opaque handle to float32 storage owned by a Backend. Code
// above the Backend never touches the memory directly: it moves data with
// Upload and Download, so a device backend can keep tensors in device memory.
type Tensor interface {
	// Len is the number of float32 elements.
	Len() int
}

// IntTensor is an opaque handle to int32 storage owned by a Backend
// (token ids, targets, positions, document ids).
type IntTensor interface {
	// Len is the number of int32 elements.
	Len() int
}

// AttnShape describes one attention call. Queries are laid out as
// [B*Tq, Heads*HeadDim] and keys/values as [B*Tk, KVHeads*HeadDim], row-major.
// Query t of sequence b sits at absolute index QOffset+t and sees key s iff
// s <= QOffset+t and the keys's document id equals the query's. Training uses
// Tq == Tk and QOffset 0; KV-cache decoding passes the cache as keys with Tk
// its capacity and QOffset the number of tokens already cached.
type AttnShape struct {
	B, Tq, Tk, QOffset      int
	Heads, KVHeads, HeadDim int
}

// AdamWParams are the scalars of one AdamW update, following
// torch.optim.AdamW: p *= 1-LR*WeightDecay; m = B1 m + (1-B1) g;
// v = B2 v + (1-B2) g²; p -= LR/(1-B1^t) * m / (sqrt(v)/sqrt(1-B2^t) + Eps).
type AdamWParams struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
	Step                               int
}

// Backend is the set of explicit forward and backward operations the model
// is written in (llm.c style, no autograd). All dimensions are passed in;
// all tensors are row-major. Unless an operation says it accumulates, it
// overwrites its outputs. Implementations must be deterministic: the same
// inputs give bit-identical outputs whatever the goroutine scheduling.
// A Backend may be used by one goroutine at a time; use one Backend per
// concurrent user (e.g. trainer and evaluator).
type Backend interface {
	// Name identifies the backend and its GEMM, e.g. "cpu/openblas".
	Name() string
	// Threads is the degree of parallelism the backend uses.
	Threads() int

	// Alloc returns a zeroed tensor of n float32.
	Alloc(n int) Tensor
	// AllocInt returns a zeroed tensor of n int32.
	AllocInt(n int) IntTensor
	// View is the sub-tensor [off, off+n) sharing storage with t.
	View(t Tensor, off, n int) Tensor
	// Free releases a tensor; using it afterwards is undefined.
	Free(t Tensor)
	// FreeInt releases an int tensor (a no-op where Go's heap holds it).
	FreeInt(t IntTensor)
	Upload(dst Tensor, src []float32)
	Download(dst []float32, src Tensor)
	UploadInt(dst IntTensor, src []int32)

	Zero(t Tensor)
	Copy(dst, src Tensor)
	// Axpy computes dst += a*src.
	Axpy(dst Tensor, a float32, src Tensor)
	Scale(t Tensor, s float32)
	// SumSquares is Σ t² over the tensors, each accumulated in float64 in a
	// fixed order and the tensors' sums added in order; several tensors
	// cost one round trip where the device is not the host's memory.
	SumSquares(ts ...Tensor) float64

	// Embedding gathers rows: out[i] = table[tokens[i]].
	Embedding(out, table Tensor, tokens IntTensor, rows, dim int)
	// EmbeddingBackward accumulates dtable[tokens[i]] += dout[i].
	EmbeddingBackward(dtable, dout Tensor, tokens IntTensor, rows, dim int)
	// RMSNorm: out = x / sqrt(mean(x²)+eps) * w, saving rstd per row.
	RMSNorm(out, rstd, x, w Tensor, rows, dim int, eps float32)
	// RMSNormBackward accumulates into dx and dw.
	RMSNormBackward(dx, dw, dout, x, w, rstd Tensor, rows, dim int)
	// RoPE rotates x [rows, heads*headDim] in place with the rotate_half
	// convention of Hugging Face LLaMA, using the cos/sin tables
	// [maxPos, headDim/2] at pos[row]. inverse applies the transpose (backward).
	RoPE(x Tensor, pos IntTensor, cos, sin Tensor, rows, heads, headDim int, inverse bool)
	// MatMul: out[rows,outDim] (+)= x[rows,in] · w[outDim,in]ᵀ (nn.Linear).
	MatMul(out, x, w Tensor, rows, in, outDim int, accumulate bool)
	// MatMulDX: dx[rows,in] (+)= dout[rows,outDim] · w[outDim,in].
	MatMulDX(dx, dout, w Tensor, rows, in, outDim int, accumulate bool)
	// MatMulDW accumulates dw[outDim,in] += doutᵀ · x.
	MatMulDW(dw, dout, x Tensor, rows, in, outDim int)
	// Attention writes out [B*Tq, Heads*HeadDim] and the log-sum-exp of
	// each (query, head) [B*Tq*Heads] for the backward pass.
	Attention(out, lse, q, k, v Tensor, qDoc, kDoc IntTensor, s AttnShape)
	// AttentionBackward overwrites dq, dk and dv.
	AttentionBackward(dq, dk, dv, dout, out, lse, q, k, v Tensor, qDoc, kDoc IntTensor, s AttnShape)
	// SwiGLU: out = silu(gate) * up over n elements.
	SwiGLU(out, gate, up Tensor, n int)
	// SwiGLUBackward overwrites dgate and dup.
	SwiGLUBackward(dgate, dup, dout, gate, up Tensor, n int)
	// CrossEntropy writes losses[i] = -log softmax(logits[i])[targets[i]]
	// (0 where targets[i] < 0). With grad it overwrites logits with
	// d(Σ_i weights[i]*gradScale*losses[i])/dlogits.
	CrossEntropy(losses, logits Tensor, targets IntTensor, weights Tensor, rows, vocab int, gradScale float32, grad bool)
	// AdamW updates p, m and v in place from the gradient g.
	AdamW(p, g, m, v Tensor, a AdamWParams)
}

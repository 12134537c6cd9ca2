package model

// layerActs are the activations of one layer kept for the backward pass.
type layerActs struct {
	rstd1, h1, q, k, v, att, lse, xmid, rstd2, h2, gate, up, act Tensor
}

// workspace holds every buffer of a forward (and optionally backward) pass
// over N = B*T rows; it is reused across steps of the same shape.
type workspace struct {
	B, T, N int
	grad    bool

	tokens, targets, pos, doc IntTensor
	weights, losses           Tensor

	x      []Tensor // residual stream: x[0] embeddings ... x[L] final
	layers []layerActs
	rstdf  Tensor
	hf     Tensor
	logits Tensor

	// backward scratch
	dres, dh, dq, dk, dv, datt, dgate, dup, dact Tensor
}

func newWorkspace(m *Model, B, T int, grad bool) *workspace {
	be, c := m.be, m.Config
	N, D, I, KVD, V, H := B*T, c.HiddenSize, c.IntermediateSize, c.KVDim(), c.VocabSize, c.NumAttentionHeads
	w := &workspace{B: B, T: T, N: N, grad: grad}
	w.tokens, w.targets, w.pos, w.doc = be.AllocInt(N), be.AllocInt(N), be.AllocInt(N), be.AllocInt(N)
	w.weights, w.losses = be.Alloc(N), be.Alloc(N)
	for l := 0; l <= c.NumHiddenLayers; l++ {
		w.x = append(w.x, be.Alloc(N*D))
	}
	for l := 0; l < c.NumHiddenLayers; l++ {
		w.layers = append(w.layers, layerActs{
			rstd1: be.Alloc(N), h1: be.Alloc(N * D), q: be.Alloc(N * D), k: be.Alloc(N * KVD), v: be.Alloc(N * KVD),
			att: be.Alloc(N * D), lse: be.Alloc(N * H), xmid: be.Alloc(N * D), rstd2: be.Alloc(N), h2: be.Alloc(N * D),
			gate: be.Alloc(N * I), up: be.Alloc(N * I), act: be.Alloc(N * I),
		})
	}
	w.rstdf, w.hf, w.logits = be.Alloc(N), be.Alloc(N*D), be.Alloc(N*V)
	if grad {
		w.dres, w.dh, w.dq, w.datt = be.Alloc(N*D), be.Alloc(N*D), be.Alloc(N*D), be.Alloc(N*D)
		w.dk, w.dv = be.Alloc(N*KVD), be.Alloc(N*KVD)
		w.dgate, w.dup, w.dact = be.Alloc(N*I), be.Alloc(N*I), be.Alloc(N*I)
	}
	return w
}

func (w *workspace) free(be Backend) {
	for _, t := range w.all() {
		if t != nil {
			be.Free(t)
		}
	}
	for _, t := range []IntTensor{w.tokens, w.targets, w.pos, w.doc} {
		be.FreeInt(t)
	}
}

func (w *workspace) all() []Tensor {
	ts := []Tensor{w.weights, w.losses, w.rstdf, w.hf, w.logits, w.dres, w.dh, w.dq, w.dk, w.dv, w.datt, w.dgate, w.dup, w.dact}
	ts = append(ts, w.x...)
	for _, a := range w.layers {
		ts = append(ts, a.rstd1, a.h1, a.q, a.k, a.v, a.att, a.lse, a.xmid, a.rstd2, a.h2, a.gate, a.up, a.act)
	}
	return ts
}

// load uploads a validated batch.
func (w *workspace) load(be Backend, b *Batch) {
	be.UploadInt(w.tokens, b.Tokens)
	be.UploadInt(w.targets, b.Targets)
	be.UploadInt(w.pos, b.Positions)
	be.UploadInt(w.doc, b.DocIDs)
	be.Upload(w.weights, b.Weights)
}

func (m *Model) attnShape(w *workspace) AttnShape {
	c := m.Config
	return AttnShape{B: w.B, Tq: w.T, Tk: w.T, Heads: c.NumAttentionHeads, KVHeads: c.NumKeyValueHeads, HeadDim: c.HeadDim()}
}

// forward runs the network up to the logits in w.logits.
func (m *Model) forward(w *workspace) {
	be, c := m.be, m.Config
	N, D, I, KVD, V := w.N, c.HiddenSize, c.IntermediateSize, c.KVDim(), c.VocabSize
	eps := float32(c.RMSNormEps)
	be.Embedding(w.x[0], m.embed.W, w.tokens, N, D)
	shape := m.attnShape(w)
	for l, L := range m.layers {
		a := &w.layers[l]
		be.RMSNorm(a.h1, a.rstd1, w.x[l], L.ln1.W, N, D, eps)
		be.MatMul(a.q, a.h1, L.q.W, N, D, D, false)
		be.MatMul(a.k, a.h1, L.k.W, N, D, KVD, false)
		be.MatMul(a.v, a.h1, L.v.W, N, D, KVD, false)
		be.RoPE(a.q, w.pos, m.cos, m.sin, N, c.NumAttentionHeads, c.HeadDim(), false)
		be.RoPE(a.k, w.pos, m.cos, m.sin, N, c.NumKeyValueHeads, c.HeadDim(), false)
		be.Attention(a.att, a.lse, a.q, a.k, a.v, w.doc, w.doc, shape)
		// The residual add rides on the GEMM's accumulate (beta = 1).
		be.Copy(a.xmid, w.x[l])
		be.MatMul(a.xmid, a.att, L.o.W, N, D, D, true)
		be.RMSNorm(a.h2, a.rstd2, a.xmid, L.ln2.W, N, D, eps)
		be.MatMul(a.gate, a.h2, L.gate.W, N, D, I, false)
		be.MatMul(a.up, a.h2, L.up.W, N, D, I, false)
		be.SwiGLU(a.act, a.gate, a.up, N*I)
		be.Copy(w.x[l+1], a.xmid)
		be.MatMul(w.x[l+1], a.act, L.down.W, N, I, D, true)
	}
	be.RMSNorm(w.hf, w.rstdf, w.x[len(m.layers)], m.norm.W, N, D, eps)
	be.MatMul(w.logits, w.hf, m.lmHead.W, N, D, V, false)
}

// backward accumulates parameter gradients into grads (indexed like
// m.params) from w.logits, which CrossEntropy has turned into dlogits.
func (m *Model) backward(w *workspace, grads []Tensor) {
	be, c := m.be, m.Config
	N, D, I, KVD, V := w.N, c.HiddenSize, c.IntermediateSize, c.KVDim(), c.VocabSize
	g := make(map[*Param]Tensor, len(m.params))
	for i, p := range m.params {
		g[p] = grads[i]
	}
	gHead := g[m.lmHead] // the embedding's gradient when tied
	be.MatMulDX(w.dh, w.logits, m.lmHead.W, N, D, V, false)
	be.MatMulDW(gHead, w.logits, w.hf, N, D, V)
	be.Zero(w.dres)
	be.RMSNormBackward(w.dres, g[m.norm], w.dh, w.x[len(m.layers)], m.norm.W, w.rstdf, N, D)
	shape := m.attnShape(w)
	for l := len(m.layers) - 1; l >= 0; l-- {
		L, a := m.layers[l], &w.layers[l]
		// x[l+1] = xmid + act·Wdᵀ: dres flows to xmid unchanged.
		be.MatMulDX(w.dact, w.dres, L.down.W, N, I, D, false)
		be.MatMulDW(g[L.down], w.dres, a.act, N, I, D)
		be.SwiGLUBackward(w.dgate, w.dup, w.dact, a.gate, a.up, N*I)
		be.MatMulDX(w.dh, w.dgate, L.gate.W, N, D, I, false)
		be.MatMulDX(w.dh, w.dup, L.up.W, N, D, I, true)
		be.MatMulDW(g[L.gate], w.dgate, a.h2, N, D, I)
		be.MatMulDW(g[L.up], w.dup, a.h2, N, D, I)
		be.RMSNormBackward(w.dres, g[L.ln2], w.dh, a.xmid, L.ln2.W, a.rstd2, N, D)
		// xmid = x[l] + att·Woᵀ.
		be.MatMulDX(w.datt, w.dres, L.o.W, N, D, D, false)
		be.MatMulDW(g[L.o], w.dres, a.att, N, D, D)
		be.AttentionBackward(w.dq, w.dk, w.dv, w.datt, a.att, a.lse, a.q, a.k, a.v, w.doc, w.doc, shape)
		be.RoPE(w.dq, w.pos, m.cos, m.sin, N, c.NumAttentionHeads, c.HeadDim(), true)
		be.RoPE(w.dk, w.pos, m.cos, m.sin, N, c.NumKeyValueHeads, c.HeadDim(), true)
		be.MatMulDX(w.dh, w.dq, L.q.W, N, D, D, false)
		be.MatMulDX(w.dh, w.dk, L.k.W, N, D, KVD, true)
		be.MatMulDX(w.dh, w.dv, L.v.W, N, D, KVD, true)
		be.MatMulDW(g[L.q], w.dq, a.h1, N, D, D)
		be.MatMulDW(g[L.k], w.dk, a.h1, N, D, KVD)
		be.MatMulDW(g[L.v], w.dv, a.h1, N, D, KVD)
		be.RMSNormBackward(w.dres, g[L.ln1], w.dh, w.x[l], L.ln1.W, a.rstd1, N, D)
	}
	be.EmbeddingBackward(g[m.embed], w.dres, w.tokens, N, D)
}

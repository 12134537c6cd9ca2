package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randSlice(rng *rand.Rand, n int, scale float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64() * scale)
	}
	return s
}

func tensorOf(be *CPUBackend, s []float32) Tensor {
	t := be.Alloc(len(s))
	be.Upload(t, s)
	return t
}

func intsOf(be *CPUBackend, s []int32) IntTensor {
	t := be.AllocInt(len(s))
	be.UploadInt(t, s)
	return t
}

// dotR is Σ r·out in float64: the scalar whose gradient the checks test.
func dotR(r []float32, out Tensor) float64 {
	var s float64
	for i, v := range f(out) {
		s += float64(r[i]) * float64(v)
	}
	return s
}

// gradCheck compares analytic with central finite differences of loss
// with respect to x, on a sample of coordinates. Float32 forward passes
// limit the accuracy: the error must stay within 2% of the largest checked
// gradient (plus 1e-6).
func gradCheck(t *testing.T, name string, x []float32, analytic []float32, loss func() float64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, uint64(len(x))))
	const eps = 1e-2
	idx := rng.Perm(len(x))
	if len(idx) > 40 {
		idx = idx[:40]
	}
	var gmax, emax float64
	for _, i := range idx {
		old := x[i]
		x[i] = old + eps
		lp := loss()
		x[i] = old - eps
		lm := loss()
		x[i] = old
		fd := (lp - lm) / (2 * eps)
		gmax = max(gmax, math.Abs(fd))
		emax = max(emax, math.Abs(fd-float64(analytic[i])))
	}
	if gmax == 0 {
		t.Fatalf("%s: all sampled gradients are zero; the check would prove nothing", name)
	}
	if emax > 2e-2*gmax+1e-6 {
		t.Errorf("%s: max |fd - analytic| = %.3g with max |grad| %.3g", name, emax, gmax)
	} else {
		t.Logf("%s: max err %.3g, max grad %.3g", name, emax, gmax)
	}
}

func TestGradRMSNorm(t *testing.T) {
	be, rng := NewCPUBackend(2), rand.New(rand.NewPCG(1, 1))
	rows, dim := 5, 24
	x, w, r := tensorOf(be, randSlice(rng, rows*dim, 1)), tensorOf(be, randSlice(rng, dim, 1)), randSlice(rng, rows*dim, 1)
	out, rstd := be.Alloc(rows*dim), be.Alloc(rows)
	loss := func() float64 { be.RMSNorm(out, rstd, x, w, rows, dim, 1e-5); return dotR(r, out) }
	loss()
	dx, dw := be.Alloc(rows*dim), be.Alloc(dim)
	be.RMSNormBackward(dx, dw, tensorOf(be, r), x, w, rstd, rows, dim)
	gradCheck(t, "rmsnorm dx", f(x), f(dx), loss)
	gradCheck(t, "rmsnorm dw", f(w), f(dw), loss)
}

func TestGradMatMul(t *testing.T) {
	be, rng := NewCPUBackend(2), rand.New(rand.NewPCG(2, 1))
	for _, sz := range []struct{ rows, in, out int }{{3, 5, 7}, {70, 64, 96}} {
		x, w := tensorOf(be, randSlice(rng, sz.rows*sz.in, 1)), tensorOf(be, randSlice(rng, sz.out*sz.in, 0.3))
		r := randSlice(rng, sz.rows*sz.out, 1)
		out := be.Alloc(sz.rows * sz.out)
		loss := func() float64 { be.MatMul(out, x, w, sz.rows, sz.in, sz.out, false); return dotR(r, out) }
		loss()
		dx, dw := be.Alloc(sz.rows*sz.in), be.Alloc(sz.out*sz.in)
		be.MatMulDX(dx, tensorOf(be, r), w, sz.rows, sz.in, sz.out, false)
		be.MatMulDW(dw, tensorOf(be, r), x, sz.rows, sz.in, sz.out)
		gradCheck(t, "matmul dx", f(x), f(dx), loss)
		gradCheck(t, "matmul dw", f(w), f(dw), loss)
	}
}

func TestGradSwiGLU(t *testing.T) {
	be, rng := NewCPUBackend(2), rand.New(rand.NewPCG(3, 1))
	n := 64
	g, u, r := tensorOf(be, randSlice(rng, n, 2)), tensorOf(be, randSlice(rng, n, 1)), randSlice(rng, n, 1)
	out := be.Alloc(n)
	loss := func() float64 { be.SwiGLU(out, g, u, n); return dotR(r, out) }
	dg, du := be.Alloc(n), be.Alloc(n)
	be.SwiGLUBackward(dg, du, tensorOf(be, r), g, u, n)
	gradCheck(t, "swiglu dgate", f(g), f(dg), loss)
	gradCheck(t, "swiglu dup", f(u), f(du), loss)
}

func TestGradRoPE(t *testing.T) {
	be, rng := NewCPUBackend(2), rand.New(rand.NewPCG(4, 1))
	cfg, _ := Preset("tiny")
	rows, heads, hd := 6, 3, cfg.HeadDim()
	cs, sn := ropeTables(cfg)
	cos, sin := tensorOf(be, cs), tensorOf(be, sn)
	pos := intsOf(be, []int32{0, 1, 5, 17, 2, 100})
	x0, r := randSlice(rng, rows*heads*hd, 1), randSlice(rng, rows*heads*hd, 1)
	out := be.Alloc(len(x0))
	loss := func() float64 {
		be.Upload(out, x0)
		be.RoPE(out, pos, cos, sin, rows, heads, hd, false)
		return dotR(r, out)
	}
	dx := tensorOf(be, r)
	be.RoPE(dx, pos, cos, sin, rows, heads, hd, true)
	gradCheck(t, "rope dx", x0, f(dx), loss)
	// Position 0 is the identity, and the rotation preserves norms.
	loss()
	for j := 0; j < heads*hd; j++ {
		if f(out)[j] != x0[j] {
			t.Fatalf("rope at position 0 changed element %d", j)
		}
	}
}

func TestGradAttention(t *testing.T) {
	be, rng := NewCPUBackend(2), rand.New(rand.NewPCG(5, 1))
	s := AttnShape{B: 2, Tq: 70, Tk: 70, Heads: 4, KVHeads: 2, HeadDim: 8}
	docs := make([]int32, s.B*s.Tq)
	for i := range docs { // row 0: docs of 30 and 40; row 1: 65 then padding
		b, t := i/s.Tq, i%s.Tq
		switch {
		case b == 0 && t < 30:
			docs[i] = 0
		case b == 0:
			docs[i] = 1
		case t < 65:
			docs[i] = 2
		default:
			docs[i] = -1
		}
	}
	doc := intsOf(be, docs)
	nq, nk := s.B*s.Tq*s.Heads*s.HeadDim, s.B*s.Tk*s.KVHeads*s.HeadDim
	q, k, v := tensorOf(be, randSlice(rng, nq, 1)), tensorOf(be, randSlice(rng, nk, 1)), tensorOf(be, randSlice(rng, nk, 1))
	r := randSlice(rng, nq, 1)
	out, lse := be.Alloc(nq), be.Alloc(s.B*s.Tq*s.Heads)
	loss := func() float64 { be.Attention(out, lse, q, k, v, doc, doc, s); return dotR(r, out) }
	loss()
	dq, dk, dv := be.Alloc(nq), be.Alloc(nk), be.Alloc(nk)
	be.AttentionBackward(dq, dk, dv, tensorOf(be, r), out, lse, q, k, v, doc, doc, s)
	gradCheck(t, "attention dq", f(q), f(dq), loss)
	gradCheck(t, "attention dk", f(k), f(dk), loss)
	gradCheck(t, "attention dv", f(v), f(dv), loss)

	// Masking: changing a key of document 0 must not move outputs of document 1.
	before := append([]float32(nil), f(out)...)
	f(k)[(5*s.KVHeads)*s.HeadDim] += 3
	loss()
	for t2 := 30; t2 < 70; t2++ {
		for j := 0; j < s.Heads*s.HeadDim; j++ {
			i := t2*s.Heads*s.HeadDim + j
			if f(out)[i] != before[i] {
				t.Fatalf("attention crossed a document boundary at query %d", t2)
			}
		}
	}
}

func TestGradCrossEntropyAndEmbedding(t *testing.T) {
	be, rng := NewCPUBackend(2), rand.New(rand.NewPCG(6, 1))
	rows, V, D := 6, 11, 5
	logits0 := randSlice(rng, rows*V, 2)
	tg := intsOf(be, []int32{3, -1, 0, 10, 3, 7})
	wts := tensorOf(be, []float32{1, 1, 0.5, 2, 0, 1})
	lg, losses := be.Alloc(rows*V), be.Alloc(rows)
	loss := func() float64 {
		be.Upload(lg, logits0)
		be.CrossEntropy(losses, lg, tg, wts, rows, V, 0.25, false)
		var s float64
		for i, l := range f(losses) {
			s += 0.25 * float64(f(wts)[i]) * float64(l)
		}
		return s
	}
	loss()
	be.CrossEntropy(losses, lg, tg, wts, rows, V, 0.25, true)
	gradCheck(t, "cross-entropy dlogits", logits0, append([]float32(nil), f(lg)...), loss)

	table := tensorOf(be, randSlice(rng, V*D, 1))
	toks := intsOf(be, []int32{1, 4, 1, 9})
	r := randSlice(rng, 4*D, 1)
	out := be.Alloc(4 * D)
	eloss := func() float64 { be.Embedding(out, table, toks, 4, D); return dotR(r, out) }
	dt := be.Alloc(V * D)
	be.EmbeddingBackward(dt, tensorOf(be, r), toks, 4, D)
	// Token 1 appears twice: its rows must hold both contributions.
	gradCheck(t, "embedding dtable", f(table)[:2*D], f(dt)[:2*D], eloss)
}

// TestGradModel checks whole-model gradients by finite differences in
// float32 on a tiny packed batch: the composition of all ops.
func TestGradModel(t *testing.T) {
	cfg, _ := Preset("tiny")
	cfg.TieWordEmbeddings = false
	be := NewCPUBackend(2)
	m, err := New(cfg, be, 3)
	if err != nil {
		t.Fatal(err)
	}
	b := packedBatch(cfg, 2, 24, 9)
	tr, err := NewTrainer(m, TrainOptions{Schedule: Schedule{Kind: "constant"}, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Step(t.Context(), []Batch{b}); err != nil {
		t.Fatal(err)
	}
	grads := tr.Gradients()
	loss := func() float64 {
		r, err := m.LossOn(t.Context(), []Batch{b})
		if err != nil {
			t.Fatal(err)
		}
		return r.Loss
	}
	for _, p := range m.Params() {
		if p.Name != "model.layers.1.self_attn.k_proj.weight" && p.Name != "model.embed_tokens.weight" && p.Name != "model.layers.0.input_layernorm.weight" {
			continue
		}
		w := f(p.W)
		// Embedding rows of unused tokens have zero gradient; check used ones.
		if p.Kind == KindEmbedding {
			tok := int(b.Tokens[3])
			w = w[tok*cfg.HiddenSize : (tok+1)*cfg.HiddenSize]
			gradCheck(t, p.Name, w, grads[p.Name].Data[tok*cfg.HiddenSize:(tok+1)*cfg.HiddenSize], loss)
			continue
		}
		gradCheck(t, p.Name, w, grads[p.Name].Data, loss)
	}
}

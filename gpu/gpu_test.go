//go:build cuda

package gpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"replayd/model"
)

// These tests need a CUDA device; they skip when New reports none. (When
// the driver is present but has no device, cu's package init exits the
// process before any test runs: scripts/gpu-check.sh checks for a device
// first.) REPLAYD_GPU_NOCUBLAS=1 runs them on the own GEMM kernel.

func newGPU(t testing.TB, prec Precision) *Backend {
	t.Helper()
	b, err := New(Options{Precision: prec, NoCuBLAS: os.Getenv("REPLAYD_GPU_NOCUBLAS") == "1"})
	if errors.Is(err, ErrNoDevice) {
		t.Skip("no CUDA device")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	t.Logf("backend %s", b.Name())
	return b
}

// pair mirrors every tensor on the CPU reference and the GPU backend.
type pair struct {
	t   *testing.T
	cpu *model.CPUBackend
	gpu *Backend
	rng *rand.Rand
}

type ft struct{ c, g model.Tensor }
type it2 struct{ c, g model.IntTensor }

func newPair(t *testing.T) *pair {
	return &pair{t: t, cpu: model.NewCPUBackend(2), gpu: newGPU(t, FP32), rng: rand.New(rand.NewPCG(7, 9))}
}

func (p *pair) rand(n int, scale float32) ft {
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(p.rng.NormFloat64()) * scale
	}
	return p.up(d)
}

func (p *pair) up(d []float32) ft {
	x := ft{p.cpu.Alloc(len(d)), p.gpu.Alloc(len(d))}
	p.cpu.Upload(x.c, d)
	p.gpu.Upload(x.g, d)
	return x
}

func (p *pair) ints(d []int32) it2 {
	x := it2{p.cpu.AllocInt(len(d)), p.gpu.AllocInt(len(d))}
	p.cpu.UploadInt(x.c, d)
	p.gpu.UploadInt(x.g, d)
	return x
}

// relErr is the norm-wise ‖gpu−cpu‖₂/‖cpu‖₂ (elementwise relative error
// is meaningless near zero).
func relErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// same compares x on both backends to tol.
func (p *pair) same(what string, x ft, tol float64) {
	p.t.Helper()
	n := x.c.Len()
	c, g := make([]float32, n), make([]float32, n)
	p.cpu.Download(c, x.c)
	p.gpu.Download(g, x.g)
	for i, v := range g {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			p.t.Fatalf("%s: gpu[%d] = %v", what, i, v)
		}
	}
	if e := relErr(g, c); e > tol {
		p.t.Errorf("%s: relative error %.3g > %.3g", what, e, tol)
	} else {
		p.t.Logf("%s: relative error %.3g", what, e)
	}
}

const opTol = 2e-5

func TestOpsParity(t *testing.T) {
	p := newPair(t)
	c, g := p.cpu, p.gpu

	t.Run("vector", func(t *testing.T) {
		n := 10007
		a, s := p.rand(n, 1), p.rand(n, 1)
		c.Axpy(a.c, 0.37, s.c)
		g.Axpy(a.g, 0.37, s.g)
		c.Scale(a.c, -1.5)
		g.Scale(a.g, -1.5)
		p.same("axpy+scale", a, 1e-7)
		b := ft{c.Alloc(n), g.Alloc(n)}
		c.Copy(b.c, a.c)
		g.Copy(b.g, a.g)
		p.same("copy", b, 0)
		sc, sg := c.SumSquares(a.c), g.SumSquares(a.g)
		if math.Abs(sc-sg) > 1e-12*sc {
			t.Errorf("SumSquares cpu %v gpu %v", sc, sg)
		}
		// One round trip for many tensors: bit-identical to one by one.
		many := []model.Tensor{a.g, p.rand(5, 1).g, g.Alloc(0), p.rand(3*sumChunk+1, 2).g}
		var seq float64
		for _, x := range many {
			seq += g.SumSquares(x)
		}
		if got := g.SumSquares(many...); math.Float64bits(got) != math.Float64bits(seq) {
			t.Errorf("SumSquares of %d tensors %v, one by one %v", len(many), got, seq)
		}
		c.Zero(b.c)
		g.Zero(b.g)
		if g.SumSquares(b.g) != 0 {
			t.Error("Zero left non-zero values")
		}
		v := g.View(a.g, 100, 50)
		if v.Len() != 50 {
			t.Errorf("view length %d", v.Len())
		}
		host := make([]float32, n)
		g.Download(host, a.g)
		vh := make([]float32, 50)
		g.Download(vh, v)
		for i := range vh {
			if vh[i] != host[100+i] {
				t.Fatalf("view[%d] = %v, want %v", i, vh[i], host[100+i])
			}
		}
	})

	t.Run("embedding", func(t *testing.T) {
		V, D, rows := 50, 72, 300
		table := p.rand(V*D, 1)
		toks := make([]int32, rows)
		for i := range toks {
			toks[i] = int32(p.rng.IntN(V / 5)) // many repeats
		}
		tk := p.ints(toks)
		out := ft{c.Alloc(rows * D), g.Alloc(rows * D)}
		c.Embedding(out.c, table.c, tk.c, rows, D)
		g.Embedding(out.g, table.g, tk.g, rows, D)
		p.same("embedding", out, 0)
		dout := p.rand(rows*D, 1)
		dt := p.rand(V*D, 1)
		c.EmbeddingBackward(dt.c, dout.c, tk.c, rows, D)
		g.EmbeddingBackward(dt.g, dout.g, tk.g, rows, D)
		p.same("embedding backward", dt, 0) // same order of additions: exact
		// New tokens in the same tensor must rebuild the grouping.
		for i := range toks {
			toks[i] = int32(p.rng.IntN(V))
		}
		c.UploadInt(tk.c, toks)
		g.UploadInt(tk.g, toks)
		c.EmbeddingBackward(dt.c, dout.c, tk.c, rows, D)
		g.EmbeddingBackward(dt.g, dout.g, tk.g, rows, D)
		p.same("embedding backward after re-upload", dt, 0)
	})

	t.Run("rmsnorm", func(t *testing.T) {
		rows, D := 600, 300 // > rmsRowsPer rows, D not a multiple of 256
		x, w := p.rand(rows*D, 2), p.rand(D, 1)
		out, rstd := ft{c.Alloc(rows * D), g.Alloc(rows * D)}, ft{c.Alloc(rows), g.Alloc(rows)}
		c.RMSNorm(out.c, rstd.c, x.c, w.c, rows, D, 1e-5)
		g.RMSNorm(out.g, rstd.g, x.g, w.g, rows, D, 1e-5)
		p.same("rmsnorm out", out, 1e-6)
		p.same("rmsnorm rstd", rstd, 1e-6)
		dout := p.rand(rows*D, 1)
		dx, dw := p.rand(rows*D, 1), p.rand(D, 1) // accumulates
		c.RMSNormBackward(dx.c, dw.c, dout.c, x.c, w.c, rstd.c, rows, D)
		g.RMSNormBackward(dx.g, dw.g, dout.g, x.g, w.g, rstd.g, rows, D)
		p.same("rmsnorm dx", dx, 1e-6)
		p.same("rmsnorm dw", dw, 1e-5)
	})

	t.Run("rope", func(t *testing.T) {
		rows, H, hd, maxPos := 77, 3, 16, 40
		cs, sn := make([]float32, maxPos*hd/2), make([]float32, maxPos*hd/2)
		for ps := 0; ps < maxPos; ps++ {
			for j := 0; j < hd/2; j++ {
				a := float64(ps) / math.Pow(10000, float64(2*j)/float64(hd))
				cs[ps*hd/2+j], sn[ps*hd/2+j] = float32(math.Cos(a)), float32(math.Sin(a))
			}
		}
		cos, sin := p.up(cs), p.up(sn)
		pos := make([]int32, rows)
		for i := range pos {
			pos[i] = int32(i % maxPos)
		}
		ps := p.ints(pos)
		x := p.rand(rows*H*hd, 1)
		for _, inv := range []bool{false, true} {
			c.RoPE(x.c, ps.c, cos.c, sin.c, rows, H, hd, inv)
			g.RoPE(x.g, ps.g, cos.g, sin.g, rows, H, hd, inv)
			p.same("rope", x, 1e-6)
		}
	})

	t.Run("matmul", func(t *testing.T) {
		rows, in, out := 131, 67, 45 // no tile-multiple sizes
		x, w := p.rand(rows*in, 1), p.rand(out*in, 1)
		for _, acc := range []bool{false, true} {
			o := p.rand(rows*out, 1)
			c.MatMul(o.c, x.c, w.c, rows, in, out, acc)
			g.MatMul(o.g, x.g, w.g, rows, in, out, acc)
			p.same("matmul", o, opTol)
			dout := p.rand(rows*out, 1)
			dx := p.rand(rows*in, 1)
			c.MatMulDX(dx.c, dout.c, w.c, rows, in, out, acc)
			g.MatMulDX(dx.g, dout.g, w.g, rows, in, out, acc)
			p.same("matmul dx", dx, opTol)
			dw := p.rand(out*in, 1)
			c.MatMulDW(dw.c, dout.c, x.c, rows, in, out)
			g.MatMulDW(dw.g, dout.g, x.g, rows, in, out)
			p.same("matmul dw", dw, opTol)
		}
	})

	for _, hd := range headDims {
		t.Run(fmt.Sprintf("attention-hd%d", hd), func(t *testing.T) { p.attention(t, 2, 150, 4, 2, hd) })
	}
	t.Run("attention-mha", func(t *testing.T) { p.attention(t, 1, 65, 2, 2, 32) })
	t.Run("attention-kvcache", func(t *testing.T) { p.attentionCache(t) })

	t.Run("swiglu", func(t *testing.T) {
		n := 5000
		gt, up := p.rand(n, 3), p.rand(n, 1)
		out := ft{c.Alloc(n), g.Alloc(n)}
		c.SwiGLU(out.c, gt.c, up.c, n)
		g.SwiGLU(out.g, gt.g, up.g, n)
		p.same("swiglu", out, 1e-6)
		dout := p.rand(n, 1)
		dg, du := ft{c.Alloc(n), g.Alloc(n)}, ft{c.Alloc(n), g.Alloc(n)}
		c.SwiGLUBackward(dg.c, du.c, dout.c, gt.c, up.c, n)
		g.SwiGLUBackward(dg.g, du.g, dout.g, gt.g, up.g, n)
		p.same("swiglu dgate", dg, 1e-6)
		p.same("swiglu dup", du, 1e-6)
	})

	t.Run("cross-entropy", func(t *testing.T) {
		rows, V := 37, 3001
		tg := make([]int32, rows)
		wt := make([]float32, rows)
		for i := range tg {
			tg[i] = int32(p.rng.IntN(V))
			wt[i] = float32(p.rng.Float64())
			if i%7 == 3 {
				tg[i] = -1
			}
		}
		targets, weights := p.ints(tg), p.up(wt)
		for _, grad := range []bool{false, true} {
			logits := p.rand(rows*V, 4)
			losses := ft{c.Alloc(rows), g.Alloc(rows)}
			c.CrossEntropy(losses.c, logits.c, targets.c, weights.c, rows, V, 0.25, grad)
			g.CrossEntropy(losses.g, logits.g, targets.g, weights.g, rows, V, 0.25, grad)
			p.same("cross-entropy losses", losses, 1e-6)
			if grad {
				p.same("cross-entropy grad", logits, 1e-6)
			}
		}
	})

	t.Run("adamw", func(t *testing.T) {
		n := 4099
		w, m, v := p.rand(n, 1), p.rand(n, 0.1), p.up(make([]float32, n))
		c.Copy(v.c, m.c)
		g.Copy(v.g, m.g)
		c.Scale(v.c, 0) // v must be ≥ 0: start from zero
		g.Scale(v.g, 0)
		for step := 1; step <= 3; step++ {
			gr := p.rand(n, 1)
			a := model.AdamWParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: step}
			c.AdamW(w.c, gr.c, m.c, v.c, a)
			g.AdamW(w.g, gr.g, m.g, v.g, a)
		}
		p.same("adamw p", w, 1e-6)
		p.same("adamw m", m, 1e-6)
		p.same("adamw v", v, 1e-6)
	})
}

// docs makes packed document ids: runs of random length, padding (-1) at
// the end of each sequence.
func (p *pair) docs(B, T int) []int32 {
	d := make([]int32, B*T)
	for b := 0; b < B; b++ {
		id, left := int32(0), 1+p.rng.IntN(T/2)
		for t := 0; t < T; t++ {
			if t >= T-5 {
				d[b*T+t] = -1
				continue
			}
			if left == 0 {
				id, left = id+1, 1+p.rng.IntN(T/2)
			}
			d[b*T+t] = id
			left--
		}
	}
	return d
}

func (p *pair) attention(t *testing.T, B, T, H, KV, hd int) {
	p.attentionShape("attention", model.AttnShape{B: B, Tq: T, Tk: T, Heads: H, KVHeads: KV, HeadDim: hd}, opTol, 1e-4)
}

// attentionShape compares forward (to fwdTol) and backward (to bwdTol) of
// self-attention s on random inputs and packed documents.
func (p *pair) attentionShape(what string, s model.AttnShape, fwdTol, bwdTol float64) {
	c, g := p.cpu, p.gpu
	B, T, H, KV, hd := s.B, s.Tq, s.Heads, s.KVHeads, s.HeadDim
	q, k, v := p.rand(B*T*H*hd, 1), p.rand(B*T*KV*hd, 1), p.rand(B*T*KV*hd, 1)
	doc := p.ints(p.docs(B, T))
	out, lse := ft{c.Alloc(B * T * H * hd), g.Alloc(B * T * H * hd)}, ft{c.Alloc(B * T * H), g.Alloc(B * T * H)}
	c.Attention(out.c, lse.c, q.c, k.c, v.c, doc.c, doc.c, s)
	g.Attention(out.g, lse.g, q.g, k.g, v.g, doc.g, doc.g, s)
	p.same(what+" out", out, fwdTol)
	p.same(what+" lse", lse, fwdTol)
	dout := p.rand(B*T*H*hd, 1)
	dq := ft{c.Alloc(B * T * H * hd), g.Alloc(B * T * H * hd)}
	dk, dv := p.rand(B*T*KV*hd, 1), p.rand(B*T*KV*hd, 1) // overwritten
	c.AttentionBackward(dq.c, dk.c, dv.c, dout.c, out.c, lse.c, q.c, k.c, v.c, doc.c, doc.c, s)
	g.AttentionBackward(dq.g, dk.g, dv.g, dout.g, out.g, lse.g, q.g, k.g, v.g, doc.g, doc.g, s)
	p.same(what+" dq", dq, bwdTol)
	p.same(what+" dk", dk, bwdTol)
	p.same(what+" dv", dv, bwdTol)
}

// attentionCache is the KV-cache decoding form: 3 new queries against a
// cache of capacity 40 holding 9 tokens.
func (p *pair) attentionCache(t *testing.T) {
	c, g := p.cpu, p.gpu
	B, Tq, Tk, off, H, KV, hd := 2, 3, 40, 9, 4, 2, 32
	s := model.AttnShape{B: B, Tq: Tq, Tk: Tk, QOffset: off, Heads: H, KVHeads: KV, HeadDim: hd}
	q, k, v := p.rand(B*Tq*H*hd, 1), p.rand(B*Tk*KV*hd, 1), p.rand(B*Tk*KV*hd, 1)
	qd, kd := p.ints(make([]int32, B*Tq)), p.ints(make([]int32, B*Tk))
	out, lse := ft{c.Alloc(B * Tq * H * hd), g.Alloc(B * Tq * H * hd)}, ft{c.Alloc(B * Tq * H), g.Alloc(B * Tq * H)}
	c.Attention(out.c, lse.c, q.c, k.c, v.c, qd.c, kd.c, s)
	g.Attention(out.g, lse.g, q.g, k.g, v.g, qd.g, kd.g, s)
	p.same("kv-cache attention out", out, opTol)
	p.same("kv-cache attention lse", lse, opTol)
}

// packedBatch is B rows of T positions with several documents per row,
// restarting positions, masked and weighted targets and padding.
func packedBatch(rng *rand.Rand, cfg model.Config, B, T int) model.Batch {
	n := B * T
	b := model.Batch{B: B, T: T, Tokens: make([]int32, n), Targets: make([]int32, n), Weights: make([]float32, n),
		DocIDs: make([]int32, n), Positions: make([]int32, n), Buckets: make([]uint8, n)}
	for r := 0; r < B; r++ {
		doc, pos, left := int32(0), int32(0), 5+rng.IntN(T/2)
		for t := 0; t < T; t++ {
			i := r*T + t
			b.Tokens[i] = int32(rng.IntN(cfg.VocabSize))
			b.Targets[i] = -1
			if t >= T-3 { // padding
				b.DocIDs[i] = -1
				continue
			}
			if left == 0 {
				doc, pos, left = doc+1, 0, 5+rng.IntN(T/2)
			}
			b.DocIDs[i], b.Positions[i] = doc, pos
			b.Buckets[i] = uint8(doc % 4)
			pos++
			left--
			if left > 0 && t+1 < T-3 {
				b.Targets[i] = int32(rng.IntN(cfg.VocabSize))
				b.Weights[i] = []float32{1, 1, 0.5, 0}[rng.IntN(4)]
			}
		}
	}
	return b
}

func hd64Config() model.Config {
	c, _ := model.Preset("tiny")
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads = 1000, 256, 2, 4, 2
	c.IntermediateSize, c.MaxPositionEmbeddings, c.TieWordEmbeddings = 512, 160, false
	return c
}

// TestTrainParity runs two training steps of whole models on the CPU
// backend and on the GPU and compares losses, gradient norms, every
// gradient and the weights after AdamW. Tolerances (norm-wise relative):
// FP32 loss 1e-5, gradients 1e-4, weights 1e-4; BF16 (GEMM inputs rounded to
// bfloat16) loss 1e-3, gradients 1e-2, weights not compared (Adam's
// division by √v amplifies bf16 rounding where gradients are small).
func TestTrainParity(t *testing.T) {
	tiny, _ := model.Preset("tiny")
	cfgs := []struct {
		name string
		cfg  model.Config
		B, T int
	}{{"tiny-hd16", tiny, 2, 128}, {"hd64-untied", hd64Config(), 2, 150}}
	for _, prec := range []Precision{FP32, BF16} {
		lossTol, gradTol, wTol := 1e-5, 1e-4, 1e-4
		if prec == BF16 {
			lossTol, gradTol, wTol = 1e-3, 1e-2, -1
		}
		for _, tc := range cfgs {
			t.Run(prec.String()+"/"+tc.name, func(t *testing.T) {
				gb := newGPU(t, prec)
				if prec != FP32 && gb.GEMM() != "cublas" {
					t.Skip("reduced precision needs cuBLAS")
				}
				batch := packedBatch(rand.New(rand.NewPCG(3, 4)), tc.cfg, tc.B, tc.T)
				cpuM, ct := newTrainer(t, model.NewCPUBackend(2), tc.cfg, 11)
				gpuM, gt := newTrainer(t, gb, tc.cfg, 11)
				for step := 1; step <= 2; step++ {
					cr, err := ct.Step(t.Context(), []model.Batch{batch})
					if err != nil {
						t.Fatal(err)
					}
					gr, err := gt.Step(t.Context(), []model.Batch{batch})
					if err != nil {
						t.Fatal(err)
					}
					el := math.Abs(gr.Loss-cr.Loss) / math.Abs(cr.Loss)
					en := math.Abs(gr.GradNorm-cr.GradNorm) / cr.GradNorm
					t.Logf("step %d: loss cpu %.6f gpu %.6f (rel %.2g); grad norm cpu %.6f gpu %.6f (rel %.2g)",
						step, cr.Loss, gr.Loss, el, cr.GradNorm, gr.GradNorm, en)
					if el > lossTol || en > gradTol {
						t.Errorf("step %d: loss rel %.3g (tol %.3g), grad norm rel %.3g (tol %.3g)", step, el, lossTol, en, gradTol)
					}
					if step == 1 {
						cg, gg := ct.Gradients(), gt.Gradients()
						worst, worstName := 0.0, ""
						for name, want := range cg {
							e := relErr(gg[name].Data, want.Data)
							if e > worst {
								worst, worstName = e, name
							}
							if e > gradTol {
								t.Errorf("gradient %s: relative error %.3g > %.3g", name, e, gradTol)
							}
						}
						t.Logf("worst gradient %s: %.3g", worstName, worst)
					}
				}
				if wTol > 0 {
					cw, gw := cpuM.Tensors(), gpuM.Tensors()
					worst := 0.0
					for name, want := range cw {
						e := relErr(gw[name].Data, want.Data)
						worst = max(worst, e)
						if e > wTol {
							t.Errorf("weights %s after 2 steps: relative error %.3g > %.3g", name, e, wTol)
						}
					}
					t.Logf("worst weight error after 2 steps: %.3g", worst)
				}
			})
		}
	}
}

// newTrainer is a model of cfg on be, initialised from seed, and its trainer.
func newTrainer(t *testing.T, be model.Backend, cfg model.Config, seed uint64) (*model.Model, *model.Trainer) {
	t.Helper()
	m, err := model.New(cfg, be, seed)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := model.NewTrainer(m, model.DefaultTrainOptions())
	if err != nil {
		t.Fatal(err)
	}
	return m, tr
}

// TestDeterminism checks the Backend contract: the same steps twice give
// bit-identical weights, in FP32 and in BF16 (cuBLAS bf16 GEMMs and the
// tensor-core attention: head size 64).
func TestDeterminism(t *testing.T) {
	cfg := hd64Config()
	batch := packedBatch(rand.New(rand.NewPCG(5, 6)), cfg, 2, 150)
	for _, prec := range []Precision{FP32, BF16} {
		t.Run(prec.String(), func(t *testing.T) {
			run := func() map[string]model.SafeTensor {
				m, tr := newTrainer(t, newGPU(t, prec), cfg, 3)
				for i := 0; i < 3; i++ {
					if _, err := tr.Step(t.Context(), []model.Batch{batch}); err != nil {
						t.Fatal(err)
					}
				}
				return m.Tensors()
			}
			a, b := run(), run()
			for name, x := range a {
				for i, v := range x.Data {
					if math.Float32bits(v) != math.Float32bits(b[name].Data[i]) {
						t.Fatalf("%s[%d]: %v then %v", name, i, v, b[name].Data[i])
					}
				}
			}
		})
	}
}

// TestTensorCoreAttentionParity compares the bf16 tensor-core attention
// (forward, dQ, dK/dV) with the CPU backend's float32 attention on packed
// documents with padding, GQA and lengths that are not tile multiples. The
// bound is bf16's: Q, K, V, P and dS are rounded to 8 significant bits.
func TestTensorCoreAttentionParity(t *testing.T) {
	gb := newGPU(t, BF16)
	p := &pair{t: t, cpu: model.NewCPUBackend(2), gpu: gb, rng: rand.New(rand.NewPCG(17, 19))}
	cases := []struct{ B, T, H, KV int }{{2, 150, 4, 2}, {1, 64, 2, 2}, {1, 37, 6, 1}, {2, 200, 2, 1}}
	for _, c := range cases {
		t.Run(fmt.Sprintf("B%d-T%d-H%d-KV%d", c.B, c.T, c.H, c.KV), func(t *testing.T) {
			s := model.AttnShape{B: c.B, Tq: c.T, Tk: c.T, Heads: c.H, KVHeads: c.KV, HeadDim: tensorCoreHeadDim}
			if !gb.tensorCores(s) {
				t.Fatal("shape not routed to the tensor-core kernels")
			}
			p.t = t
			p.attentionShape("tc attention", s, 2e-2, 2e-2)
		})
	}
}

// TestEvaluationFreesDeviceMemory: evaluation on the GPU (losses over
// batches of changing shapes, logits, generation) and training with a
// changing batch shape must give back what they allocate; on the CPU Go's
// heap does it, on the GPU a forgotten buffer is a leak per sample.
func TestEvaluationFreesDeviceMemory(t *testing.T) {
	gb := newGPU(t, FP32)
	cfg := hd64Config()
	m, tr := newTrainer(t, gb, cfg, 3)
	round := func() {
		// The same batches every round: the embedding backward's cached
		// token grouping is sized by the tokens.
		rng := rand.New(rand.NewPCG(8, 9))
		for _, T := range []int{40, 72} {
			b := packedBatch(rng, cfg, 1, T)
			if _, err := m.LossOn(t.Context(), []model.Batch{b, packedBatch(rng, cfg, 2, T+8)}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := m.Logits(t.Context(), b); err != nil {
				t.Fatal(err)
			}
			if _, err := tr.Step(t.Context(), []model.Batch{b}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := m.Generate(t.Context(), []int32{1, 2, 3}, 6, model.GenerateOptions{NoEOS: true}); err != nil {
			t.Fatal(err)
		}
	}
	round() // the scratch buffer and the trainer's state reach their size
	before := gb.Allocated()
	for i := 0; i < 3; i++ {
		round()
	}
	if after := gb.Allocated(); after != before {
		t.Fatalf("device memory %d bytes after 3 more rounds, %d before: %+d per round", after, before, (after-before)/3)
	}
	t.Logf("device memory steady at %.1f MB", float64(before)/1e6)
}

package model

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// torchPython returns the interpreter with torch, or skips the test.
func torchPython(t *testing.T) string {
	t.Helper()
	py := os.Getenv("PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if err := exec.Command(py, "-c", "import torch, numpy").Run(); err != nil {
		t.Skipf("parity needs %s with torch and numpy: %v", py, err)
	}
	return py
}

// relErr is ‖a−b‖₂ / ‖b‖₂ (the norm-wise relative error; elementwise
// relative errors are meaningless for values near zero).
func relErr(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// packedBatch builds B rows of T positions holding documents of random
// lengths, a padding tail, random weights and masked (-1) targets.
func packedBatch(cfg Config, B, T int, seed uint64) Batch {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := Batch{B: B, T: T}
	n := B * T
	b.Tokens, b.Targets, b.Weights = make([]int32, n), make([]int32, n), make([]float32, n)
	b.DocIDs, b.Positions, b.Buckets = make([]int32, n), make([]int32, n), make([]uint8, n)
	doc := int32(0)
	for r := 0; r < B; r++ {
		t := 0
		pad := T / 8 * r % (T / 3) // rows end with 0.. padding positions
		for t < T-pad {
			l := min(2+rng.IntN(T/2), T-pad-t)
			w := float32(0.25 + rng.Float64())
			bucket := uint8(rng.IntN(4))
			for p := 0; p < l; p++ {
				i := r*T + t + p
				b.Tokens[i] = int32(rng.IntN(cfg.VocabSize))
				b.DocIDs[i], b.Positions[i], b.Buckets[i] = doc, int32(p), bucket
			}
			for p := 0; p < l; p++ {
				i := r*T + t + p
				b.Targets[i] = -1
				if p+1 < l && rng.IntN(5) != 0 { // some masked like SFT prompts
					b.Targets[i] = b.Tokens[i+1]
					b.Weights[i] = w
				}
			}
			t += l
			doc++
		}
		for ; t < T; t++ {
			i := r*T + t
			b.Tokens[i], b.Targets[i], b.DocIDs[i], b.Positions[i] = 0, -1, -1, 0
		}
	}
	return b
}

func randomBatch(cfg Config, B, T int, seed uint64) Batch {
	rng := rand.New(rand.NewPCG(seed, 2))
	toks := make([]int32, B*T)
	for i := range toks {
		toks[i] = int32(rng.IntN(cfg.VocabSize))
	}
	return SingleDocBatch(B, T, toks)
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Parity tolerances, norm-wise relative (see relErr).
const (
	tolLogits = 1e-5
	tolGrad   = 1e-4
	// AdamW normalises each update by √v, which amplifies the ~5e-7
	// gradient differences where successive gradients nearly cancel; the
	// worst tensor measured is 1.1e-5 of its norm, so 2e-5 is the bound.
	tolAdam = 2e-5
)

func TestParityTorch(t *testing.T) {
	py := torchPython(t)
	script, err := filepath.Abs("parity/reference.py")
	if err != nil {
		t.Fatal(err)
	}
	tiny, _ := Preset("tiny")
	gqaTied := tiny
	mhaUntied := tiny
	mhaUntied.NumKeyValueHeads, mhaUntied.TieWordEmbeddings, mhaUntied.NumAttentionHeads = 2, false, 2
	packed := tiny
	packed.TieWordEmbeddings, packed.NumAttentionHeads, packed.NumKeyValueHeads = false, 8, 2
	packed.RopeTheta = 500000
	cases := []struct {
		name   string
		cfg    Config
		batch  Batch
		decayE bool
	}{
		{"gqa-tied", gqaTied, randomBatch(gqaTied, 2, 48, 1), false},
		{"mha-untied", mhaUntied, randomBatch(mhaUntied, 3, 40, 2), true},
		{"packed-gqa-untied", packed, packedBatch(packed, 3, 96, 3), false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			be := NewCPUBackend(2)
			m, err := New(tc.cfg, be, uint64(10+i))
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Save(dir); err != nil {
				t.Fatal(err)
			}
			b := tc.batch
			writeJSON(t, filepath.Join(dir, "batch.json"), map[string]any{"B": b.B, "T": b.T, "tokens": b.Tokens, "targets": b.Targets,
				"weights": b.Weights, "doc_ids": b.DocIDs, "positions": b.Positions})
			opt := TrainOptions{Schedule: Schedule{Kind: "constant", PeakLR: 1e-3}, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8,
				WeightDecay: 0.1, DecayEmbeddings: tc.decayE, ClipNorm: 0.5}
			writeJSON(t, filepath.Join(dir, "train.json"), map[string]any{"lr": 1e-3, "beta1": opt.Beta1, "beta2": opt.Beta2, "eps": opt.Eps,
				"weight_decay": opt.WeightDecay, "decay_embeddings": tc.decayE, "clip": opt.ClipNorm, "steps": 2})
			cmd := exec.Command(py, script, dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("reference.py: %v\n%s", err, out)
			}
			ref, _, err := ReadSafetensors(filepath.Join(dir, "ref.safetensors"))
			if err != nil {
				t.Fatal(err)
			}

			// Forward: logits, per-position NLL and the weighted loss.
			logits, nll, err := m.Logits(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			check(t, "logits", relErr(logits, ref["logits"].Data), tolLogits)
			check(t, "nll", relErr(nll, ref["nll"].Data), tolLogits)
			lr, err := m.LossOn(ctx, []Batch{b})
			if err != nil {
				t.Fatal(err)
			}
			check(t, "loss", math.Abs(lr.Loss-float64(ref["loss"].Data[0]))/float64(ref["loss"].Data[0]), tolLogits)

			// Gradients (unclipped: a zero-LR, no-clip step on a clone).
			gm, err := m.Clone(NewCPUBackend(2))
			if err != nil {
				t.Fatal(err)
			}
			gt, err := NewTrainer(gm, TrainOptions{Schedule: Schedule{Kind: "constant"}, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := gt.Step(ctx, []Batch{b}); err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for name, g := range gt.Gradients() {
				e := relErr(g.Data, ref["grad."+name].Data)
				worst = max(worst, e)
				if e > tolGrad {
					t.Errorf("grad %s: rel err %.3g > %g", name, e, tolGrad)
				}
			}
			t.Logf("grad worst rel err %.3g over %d tensors", worst, len(m.Params()))

			// Two AdamW steps with clipping.
			tr, err := NewTrainer(m, opt)
			if err != nil {
				t.Fatal(err)
			}
			for s := 0; s < 2; s++ {
				r, err := tr.Step(ctx, []Batch{b})
				if err != nil {
					t.Fatal(err)
				}
				if r.GradNorm <= opt.ClipNorm {
					t.Errorf("step %d: grad norm %g does not exercise clipping at %g", s, r.GradNorm, opt.ClipNorm)
				}
				check(t, "grad norm", math.Abs(r.GradNorm-float64(ref["grad_norms"].Data[s]))/r.GradNorm, tolGrad)
			}
			worst, worstUpd := 0.0, 0.0
			before, _, err := ReadSafetensors(filepath.Join(dir, "model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			for name, p := range m.Tensors() {
				want := ref["after."+name].Data
				e := relErr(p.Data, want)
				worst = max(worst, e)
				if os.Getenv("PARITY_DEBUG") != "" {
					mi, md := 0, 0.0
					for j := range want {
						if d := math.Abs(float64(p.Data[j] - want[j])); d > md {
							mi, md = j, d
						}
					}
					t.Logf("%s: max abs diff %.3g at %d, grad %.3g, p %.3g", name, md, mi, ref["grad."+name].Data[mi], want[mi])
				}
				if e > tolAdam {
					t.Errorf("param %s after 2 AdamW steps: rel err %.3g > %g", name, e, tolAdam)
				}
				// The update itself (p_after − p_before) is much smaller than
				// p; report its relative error too, for information.
				du, dw := make([]float32, len(want)), make([]float32, len(want))
				for j := range want {
					du[j] = p.Data[j] - before[name].Data[j]
					dw[j] = want[j] - before[name].Data[j]
				}
				worstUpd = max(worstUpd, relErr(du, dw))
			}
			t.Logf("AdamW: worst param rel err %.3g, worst update rel err %.3g", worst, worstUpd)

			// A torch-written checkpoint (F32 and BF16) loads and matches.
			for _, v := range []struct{ dir, ref string }{{"torch_model", "ref.safetensors"}, {"torch_model_bf16", "ref_bf16.safetensors"}} {
				tm, err := Load(filepath.Join(dir, v.dir), NewCPUBackend(2))
				if err != nil {
					t.Fatal(err)
				}
				want, _, err := ReadSafetensors(filepath.Join(dir, v.ref))
				if err != nil {
					t.Fatal(err)
				}
				key := "logits_after"
				if v.ref == "ref_bf16.safetensors" {
					key = "logits"
				}
				got, _, err := tm.Logits(ctx, b)
				if err != nil {
					t.Fatal(err)
				}
				check(t, v.dir+" logits", relErr(got, want[key].Data), tolLogits)
			}
		})
	}
}

func check(t *testing.T, what string, err, tol float64) {
	t.Helper()
	if !(err <= tol) {
		t.Errorf("%s: rel err %.3g > %g", what, err, tol)
	} else {
		t.Logf("%s: rel err %.3g (tol %g)", what, err, tol)
	}
}

package model

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func tinyModel(t *testing.T, layers int, tied bool, seed uint64) *Model {
	t.Helper()
	cfg, _ := Preset("tiny")
	cfg.NumHiddenLayers, cfg.TieWordEmbeddings = layers, tied
	m, err := New(cfg, NewCPUBackend(2), seed)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestOverfitOneLayer(t *testing.T) {
	m := tinyModel(t, 1, false, 1)
	b := randomBatch(m.Config, 2, 16, 4)
	tr, err := NewTrainer(m, TrainOptions{Schedule: Schedule{Kind: "constant", PeakLR: 1e-2, Warmup: 10}, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, ClipNorm: 1})
	if err != nil {
		t.Fatal(err)
	}
	var first, last StepResult
	for i := 0; i < 200; i++ {
		r, err := tr.Step(t.Context(), []Batch{b})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = r
		}
		last = r
	}
	t.Logf("loss %.4f -> %.4f", first.Loss, last.Loss)
	if first.Loss < 5 || last.Loss > 0.05 {
		t.Fatalf("1-layer model did not overfit a fixed batch: loss %.4f -> %.4f", first.Loss, last.Loss)
	}
}

func TestStepBucketsAndAccumulation(t *testing.T) {
	m := tinyModel(t, 2, true, 2)
	b := packedBatch(m.Config, 2, 32, 5)
	// One batch vs the same rows split into two micro-batches: same loss.
	half := func(r int) Batch {
		n := b.T
		return Batch{B: 1, T: b.T, Tokens: b.Tokens[r*n : (r+1)*n], Targets: b.Targets[r*n : (r+1)*n], Weights: b.Weights[r*n : (r+1)*n],
			DocIDs: b.DocIDs[r*n : (r+1)*n], Positions: b.Positions[r*n : (r+1)*n], Buckets: b.Buckets[r*n : (r+1)*n]}
	}
	whole, err := m.LossOn(t.Context(), []Batch{b})
	if err != nil {
		t.Fatal(err)
	}
	split, err := m.LossOn(t.Context(), []Batch{half(0), half(1)})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(whole.Loss-split.Loss) > 1e-6*whole.Loss {
		t.Fatalf("loss over micro-batches %v != whole batch %v", split.Loss, whole.Loss)
	}
	var sl, sw float64
	used := 0
	for k := 0; k < MaxBuckets; k++ {
		sl += whole.BucketLoss[k]
		sw += whole.BucketWeight[k]
		if whole.BucketWeight[k] > 0 {
			used++
		}
	}
	if used < 2 || math.Abs(sl/sw-whole.Loss) > 1e-9 {
		t.Fatalf("bucket totals inconsistent: %d buckets, Σloss/Σw=%v, loss=%v", used, sl/sw, whole.Loss)
	}
	tr, _ := NewTrainer(m, DefaultTrainOptions())
	r, err := tr.Step(t.Context(), []Batch{half(0), half(1)})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(r.Loss-whole.Loss) > 1e-6*whole.Loss || r.Tokens != whole.Tokens || r.Step != 1 {
		t.Fatalf("step result %+v does not match loss %v / %d tokens", r, whole.Loss, whole.Tokens)
	}
	zero := randomBatch(m.Config, 1, 8, 1)
	clear(zero.Weights)
	if _, err := tr.Step(t.Context(), []Batch{zero}); !errors.Is(err, ErrNoLoss) {
		t.Fatalf("zero-weight batch: err %v, want ErrNoLoss", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := tr.Step(ctx, []Batch{b}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled step: err %v", err)
	}
	if tr.StepCount() != 1 {
		t.Fatalf("failed steps advanced the step count to %d", tr.StepCount())
	}
}

// TestResumeBitExact: N steps straight equal N/2 steps, save, load into a
// fresh model and trainer, N/2 steps — byte for byte.
func TestResumeBitExact(t *testing.T) {
	const N = 6
	opt := DefaultTrainOptions()
	opt.Schedule = Schedule{Kind: "wsd", PeakLR: 3e-3, MinLR: 1e-4, Warmup: 2, Total: N, Decay: 2}
	opt.Seed = 99
	batches := func(i int) []Batch {
		cfg, _ := Preset("tiny")
		return []Batch{packedBatch(cfg, 2, 32, uint64(100+i)), randomBatch(cfg, 1, 32, uint64(200+i))}
	}
	run := func(m *Model, tr *Trainer, from, to int) {
		for i := from; i < to; i++ {
			if _, err := tr.Step(t.Context(), batches(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	m1 := tinyModel(t, 2, true, 5)
	t1, _ := NewTrainer(m1, opt)
	run(m1, t1, 0, N)
	straight := t.TempDir()
	if err := m1.Save(straight); err != nil {
		t.Fatal(err)
	}

	m2 := tinyModel(t, 2, true, 5)
	t2, _ := NewTrainer(m2, opt)
	run(m2, t2, 0, N/2)
	mid := t.TempDir()
	if err := m2.Save(mid); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(mid, "training_state.safetensors")
	if err := t2.SaveTrainingState(state); err != nil {
		t.Fatal(err)
	}
	m3, err := Load(mid, NewCPUBackend(2))
	if err != nil {
		t.Fatal(err)
	}
	t3, _ := NewTrainer(m3, DefaultTrainOptions()) // options come from the state
	if err := t3.LoadTrainingState(state); err != nil {
		t.Fatal(err)
	}
	if t3.StepCount() != N/2 || t3.Rand().Uint64() != t2.Rand().Uint64() {
		t.Fatalf("step or RNG state not restored")
	}
	t1.Rand().Uint64() // keep the straight run's RNG in step with the draw above
	run(m3, t3, N/2, N)
	resumed := t.TempDir()
	if err := m3.Save(resumed); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(straight, "model.safetensors"))
	b, _ := os.ReadFile(filepath.Join(resumed, "model.safetensors"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatalf("resumed weights differ from the straight run")
	}
	if t1.Rand().Uint64() != t3.Rand().Uint64() {
		t.Fatalf("RNG streams diverged after resume")
	}
	init, _ := os.ReadFile(filepath.Join(mid, "model.safetensors"))
	if bytes.Equal(init, a) {
		t.Fatalf("training did not change the weights; the comparison proves nothing")
	}
}

func TestSaveLoadAndClone(t *testing.T) {
	for _, tied := range []bool{true, false} {
		m := tinyModel(t, 2, tied, 7)
		dir := t.TempDir()
		if err := m.Save(dir); err != nil {
			t.Fatal(err)
		}
		ts, meta, err := ReadSafetensors(filepath.Join(dir, "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ts["lm_head.weight"]; ok == tied || meta["format"] != "pt" {
			t.Fatalf("tied=%v: lm_head presence %v, metadata %v", tied, ok, meta)
		}
		l, err := Load(dir, NewCPUBackend(1))
		if err != nil {
			t.Fatal(err)
		}
		c, err := l.Clone(NewCPUBackend(1))
		if err != nil {
			t.Fatal(err)
		}
		b := packedBatch(m.Config, 2, 24, 1)
		want, _ := m.LossOn(t.Context(), []Batch{b})
		got, _ := c.LossOn(t.Context(), []Batch{b})
		// Different thread counts split GEMMs differently: equal to rounding.
		if math.Abs(want.Loss-got.Loss) > 1e-6*want.Loss {
			t.Fatalf("tied=%v: clone loss %v != %v", tied, got.Loss, want.Loss)
		}
	}
}

func TestGenerateMatchesFullForward(t *testing.T) {
	m := tinyModel(t, 2, true, 11)
	prompt := []int32{1, 17, 99, 3, 250}
	got, err := m.Generate(t.Context(), prompt, 12, GenerateOptions{NoEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 12 {
		t.Fatalf("generated %d tokens, want 12", len(got))
	}
	// Reference: greedy without cache, recomputing the whole sequence.
	seq := append([]int32(nil), prompt...)
	V := m.Config.VocabSize
	for i := 0; i < 12; i++ {
		b := SingleDocBatch(1, len(seq), seq)
		logits, _, err := m.Logits(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		next := sample(logits[(len(seq)-1)*V:], GenerateOptions{}, nil)
		if next != got[i] {
			t.Fatalf("token %d: cache decoding %d, full forward %d", i, got[i], next)
		}
		seq = append(seq, next)
	}
	// Stop ids end generation without being returned.
	stopped, _ := m.Generate(t.Context(), prompt, 12, GenerateOptions{NoEOS: true, StopIDs: []int32{got[3]}})
	first := 0
	for first < len(got) && got[first] != got[3] {
		first++
	}
	if len(stopped) != first {
		t.Fatalf("stop id: got %v, want the first %d of %v", stopped, first, got)
	}
	// Sampling is reproducible for a seed; top-k 1 is greedy.
	s1, _ := m.Generate(t.Context(), prompt, 8, GenerateOptions{Temperature: 1, TopP: 0.9, Seed: 3, NoEOS: true})
	s2, _ := m.Generate(t.Context(), prompt, 8, GenerateOptions{Temperature: 1, TopP: 0.9, Seed: 3, NoEOS: true})
	k1, _ := m.Generate(t.Context(), prompt, 8, GenerateOptions{Temperature: 0.7, TopK: 1, Seed: 4, NoEOS: true})
	if !equalInts(s1, s2) || !equalInts(k1, got[:8]) {
		t.Fatalf("sampling not reproducible (%v vs %v) or top-k=1 not greedy (%v vs %v)", s1, s2, k1, got[:8])
	}
}

func equalInts(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSchedules(t *testing.T) {
	cases := []struct {
		s    Schedule
		step int
		want float64
	}{
		{Schedule{Kind: "constant", PeakLR: 1, Warmup: 4}, 0, 0.25},
		{Schedule{Kind: "constant", PeakLR: 1, Warmup: 4}, 3, 1},
		{Schedule{Kind: "constant", PeakLR: 1, Warmup: 4}, 1000, 1},
		{Schedule{Kind: "cosine", PeakLR: 1, MinLR: 0.1, Warmup: 10, Total: 110}, 10, 1},
		{Schedule{Kind: "cosine", PeakLR: 1, MinLR: 0.1, Warmup: 10, Total: 110}, 60, 0.55},
		{Schedule{Kind: "cosine", PeakLR: 1, MinLR: 0.1, Warmup: 10, Total: 110}, 500, 0.1},
		{Schedule{Kind: "wsd", PeakLR: 1, MinLR: 0, Warmup: 10, Total: 100, Decay: 20}, 50, 1},
		{Schedule{Kind: "wsd", PeakLR: 1, MinLR: 0, Warmup: 10, Total: 100, Decay: 20}, 90, 0.5},
		{Schedule{Kind: "wsd", PeakLR: 1, MinLR: 0, Warmup: 10, Total: 100, Decay: 20}, 200, 0},
	}
	for _, c := range cases {
		if got := c.s.LR(c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%+v step %d: lr %v, want %v", c.s, c.step, got, c.want)
		}
	}
	if (Schedule{Kind: "linear"}).Validate() == nil {
		t.Error("unknown schedule kind accepted")
	}
}

func TestBatchValidate(t *testing.T) {
	cfg, _ := Preset("tiny")
	good := func() Batch { return packedBatch(cfg, 1, 16, 1) }
	cases := []struct {
		name string
		edit func(*Batch)
	}{
		{"short tokens", func(b *Batch) { b.Tokens = b.Tokens[:3] }},
		{"token out of vocab", func(b *Batch) { b.Tokens[2] = int32(cfg.VocabSize) }},
		{"target below -1", func(b *Batch) { b.Targets[0] = -2 }},
		{"position too large", func(b *Batch) { b.Positions[1] = int32(cfg.MaxPositionEmbeddings) }},
		{"negative weight", func(b *Batch) { b.Weights[0] = -1 }},
		{"NaN weight", func(b *Batch) { b.Weights[0] = float32(math.NaN()) }},
		{"bucket 8", func(b *Batch) { b.Buckets[0] = MaxBuckets }},
		{"zero B", func(b *Batch) { b.B = 0 }},
	}
	g := good()
	if err := g.Validate(cfg); err != nil {
		t.Fatalf("valid batch rejected: %v", err)
	}
	for _, c := range cases {
		b := good()
		c.edit(&b)
		if err := b.Validate(cfg); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

func TestLoadConfigHF(t *testing.T) {
	// A SmolLM2-135M style config.json as transformers writes it.
	raw := `{"architectures":["LlamaForCausalLM"],"attention_bias":false,"attention_dropout":0.0,"bos_token_id":0,
"eos_token_id":0,"hidden_act":"silu","hidden_size":576,"initializer_range":0.041666666666666664,"intermediate_size":1536,
"is_llama_config":true,"max_position_embeddings":8192,"mlp_bias":false,"model_type":"llama","num_attention_heads":9,
"num_hidden_layers":30,"num_key_value_heads":3,"pretraining_tp":1,"rms_norm_eps":1e-05,"rope_interleaved":false,
"rope_scaling":null,"rope_theta":100000,"tie_word_embeddings":true,"torch_dtype":"bfloat16","transformers_version":"4.42.3",
"use_cache":true,"vocab_size":49152}`
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.HeadDim() != 64 || c.KVDim() != 192 || !c.TieWordEmbeddings || c.RopeTheta != 100000 || c.VocabSize != 49152 {
		t.Fatalf("parsed %+v", c)
	}
	for _, name := range []string{"tiny", "small", "base"} {
		p, err := Preset(name)
		if err != nil || p.Validate() != nil {
			t.Fatalf("preset %s: %v", name, err)
		}
	}
	if _, err := Preset("huge"); err == nil {
		t.Fatal("unknown preset accepted")
	}
}

// SaveDType in bfloat16: half the bytes, torch_dtype says so, every weight
// is the float32 one rounded to nearest even, and the loss moves by
// bf16-rounding amounts only.
func TestSaveDType(t *testing.T) {
	m := tinyModel(t, 2, false, 7)
	b := packedBatch(m.Config, 2, 24, 1)
	want, _ := m.LossOn(t.Context(), []Batch{b})
	sizes := map[string]int64{}
	for _, c := range []struct {
		dtype, stored string
		lossTol       float64
	}{{"float32", "F32", 0}, {"bfloat16", "BF16", 1e-2}} {
		dir := t.TempDir()
		if err := m.SaveDType(dir, c.dtype); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(filepath.Join(dir, "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		sizes[c.dtype] = st.Size()
		raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil || !strings.Contains(string(raw), `"torch_dtype": "`+c.dtype+`"`) {
			t.Fatalf("%s: config.json %s (%v)", c.dtype, raw, err)
		}
		header, err := os.ReadFile(filepath.Join(dir, "model.safetensors"))
		if err != nil || !strings.Contains(string(header[:min(len(header), 4096)]), `"dtype":"`+c.stored+`"`) {
			t.Fatalf("%s: safetensors header does not store %s", c.dtype, c.stored)
		}
		l, err := Load(dir, NewCPUBackend(1))
		if err != nil {
			t.Fatal(err)
		}
		orig, loaded := m.Tensors(), l.Tensors()
		for name, x := range orig {
			for i, v := range x.Data {
				w := v
				if c.dtype == "bfloat16" {
					w = math.Float32frombits(uint32(f32ToBF16(v)) << 16)
				}
				if loaded[name].Data[i] != w {
					t.Fatalf("%s: %s[%d] = %v, want %v", c.dtype, name, i, loaded[name].Data[i], w)
				}
			}
		}
		got, _ := l.LossOn(t.Context(), []Batch{b})
		if d := math.Abs(got.Loss-want.Loss) / want.Loss; d > max(c.lossTol, 1e-6) {
			t.Fatalf("%s: loss %v vs %v (relative %.3g)", c.dtype, got.Loss, want.Loss, d)
		}
	}
	if r := float64(sizes["bfloat16"]) / float64(sizes["float32"]); r > 0.51 {
		t.Fatalf("bfloat16 file is %.2f of the float32 one", r)
	}
	if err := m.SaveDType(t.TempDir(), "float16"); err == nil {
		t.Fatal("float16 accepted")
	}
}

// Llama 3 configs give eos_token_id as a list and Llama 3.1 adds
// rope_scaling: the list must load (and stop generation at any of its
// ids), rope_scaling must be refused rather than silently ignored.
func TestLoadConfigEOSListAndRopeScaling(t *testing.T) {
	base := `"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":64,"intermediate_size":128,
"num_attention_heads":4,"num_hidden_layers":1,"num_key_value_heads":2,"vocab_size":300,"max_position_embeddings":64,
"rms_norm_eps":1e-05,"rope_theta":500000.0,"bos_token_id":1`
	cases := []struct {
		name, extra string
		eos         int
		extraEOS    []int
		wantErr     string
	}{
		{"one id", `"eos_token_id":2`, 2, nil, ""},
		{"llama 3.1 list", `"eos_token_id":[2,7,9],"rope_scaling":null`, 2, []int{7, 9}, ""},
		{"null", `"eos_token_id":null`, -1, nil, ""},
		{"absent", `"tie_word_embeddings":false`, -1, nil, ""},
		{"empty list", `"eos_token_id":[]`, 0, nil, "eos_token_id"},
		{"string", `"eos_token_id":"2"`, 0, nil, "eos_token_id"},
		{"llama3 rope scaling", `"eos_token_id":2,"rope_scaling":{"factor":8.0,"rope_type":"llama3"}`, 0, nil, "rope_scaling"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{"+base+","+c.extra+"}"), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(dir)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.EOSTokenID != c.eos || !slices.Equal(cfg.ExtraEOSTokenIDs, c.extraEOS) {
				t.Fatalf("eos %d extra %v, want %d %v", cfg.EOSTokenID, cfg.ExtraEOSTokenIDs, c.eos, c.extraEOS)
			}
			// Written back as it was read, and read again the same.
			out := t.TempDir()
			if err := writeConfig(out, cfg, "float32"); err != nil {
				t.Fatal(err)
			}
			again, err := LoadConfig(out)
			if err != nil {
				t.Fatal(err)
			}
			if again.EOSTokenID != c.eos || !slices.Equal(again.ExtraEOSTokenIDs, c.extraEOS) {
				t.Fatalf("round trip: eos %d extra %v", again.EOSTokenID, again.ExtraEOSTokenIDs)
			}
		})
	}
}

// Generation stops at every id of an eos_token_id list.
func TestGenerateStopsAtExtraEOS(t *testing.T) {
	cfg, _ := Preset("tiny")
	cfg.VocabSize = 64
	m, err := New(cfg, NewCPUBackend(1), 5)
	if err != nil {
		t.Fatal(err)
	}
	prompt := []int32{1, 5, 9}
	free, err := m.Generate(t.Context(), prompt, 8, GenerateOptions{NoEOS: true})
	if err != nil || len(free) == 0 {
		t.Fatalf("generate: %v %v", free, err)
	}
	// The greedy continuation's first token, made an extra EOS, must end
	// generation before it is emitted.
	m.Config.EOSTokenID, m.Config.ExtraEOSTokenIDs = 63, []int{int(free[0])}
	if free[0] == 63 {
		m.Config.EOSTokenID = 62
	}
	got, err := m.Generate(t.Context(), prompt, 8, GenerateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("generated %v past the extra EOS %d", got, free[0])
	}
}

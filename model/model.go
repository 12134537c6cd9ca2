package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// ParamKind says how the optimiser treats a parameter.
type ParamKind int

const (
	// KindLinear is a projection matrix [out, in]: weight decay applies.
	KindLinear ParamKind = iota
	// KindNorm is an RMSNorm gain: never decayed.
	KindNorm
	// KindEmbedding is the token embedding (and the tied LM head): decay configurable.
	KindEmbedding
)

// Param is one named weight tensor, in Hugging Face naming and shape.
type Param struct {
	Name  string
	Shape []int
	Kind  ParamKind
	W     Tensor
}

// Size is the number of elements.
func (p *Param) Size() int {
	n := 1
	for _, d := range p.Shape {
		n *= d
	}
	return n
}

type layerParams struct {
	ln1, q, k, v, o, ln2, gate, up, down *Param
}

// Model is a LLaMA decoder held in a Backend's memory. A Model is used by
// one goroutine at a time; Clone makes an independent copy for another
// goroutine (e.g. evaluation on a snapshot while training continues).
type Model struct {
	Config Config
	be     Backend
	params []*Param
	embed  *Param
	norm   *Param
	lmHead *Param // == embed when tied
	layers []layerParams
	// RoPE tables [max_position_embeddings, head_dim/2].
	cos, sin Tensor
}

// Backend returns the backend holding the weights.
func (m *Model) Backend() Backend { return m.be }

// Params lists the parameters in checkpoint order (the LM head only when untied).
func (m *Model) Params() []*Param { return m.params }

// NumParams counts the parameters (a tied head counted once).
func (m *Model) NumParams() int {
	n := 0
	for _, p := range m.params {
		n += p.Size()
	}
	return n
}

// build allocates the parameter tensors (zeroed) and the RoPE tables.
func build(cfg Config, be Backend) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, be: be}
	add := func(name string, kind ParamKind, shape ...int) *Param {
		p := &Param{Name: name, Shape: shape, Kind: kind}
		p.W = be.Alloc(p.Size())
		m.params = append(m.params, p)
		return p
	}
	D, I, KVD := cfg.HiddenSize, cfg.IntermediateSize, cfg.KVDim()
	m.embed = add("model.embed_tokens.weight", KindEmbedding, cfg.VocabSize, D)
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		pre := "model.layers." + strconv.Itoa(l) + "."
		var L layerParams
		L.q = add(pre+"self_attn.q_proj.weight", KindLinear, D, D)
		L.k = add(pre+"self_attn.k_proj.weight", KindLinear, KVD, D)
		L.v = add(pre+"self_attn.v_proj.weight", KindLinear, KVD, D)
		L.o = add(pre+"self_attn.o_proj.weight", KindLinear, D, D)
		L.gate = add(pre+"mlp.gate_proj.weight", KindLinear, I, D)
		L.up = add(pre+"mlp.up_proj.weight", KindLinear, I, D)
		L.down = add(pre+"mlp.down_proj.weight", KindLinear, D, I)
		L.ln1 = add(pre+"input_layernorm.weight", KindNorm, D)
		L.ln2 = add(pre+"post_attention_layernorm.weight", KindNorm, D)
		m.layers = append(m.layers, L)
	}
	m.norm = add("model.norm.weight", KindNorm, D)
	if cfg.TieWordEmbeddings {
		m.lmHead = m.embed
	} else {
		m.lmHead = add("lm_head.weight", KindLinear, cfg.VocabSize, D)
	}
	cos, sin := ropeTables(cfg)
	m.cos, m.sin = be.Alloc(len(cos)), be.Alloc(len(sin))
	be.Upload(m.cos, cos)
	be.Upload(m.sin, sin)
	return m, nil
}

// ropeTables computes cos/sin exactly as Hugging Face's LlamaRotaryEmbedding
// does in float32: inv_freq = 1/θ^(2j/d), angle = float32(pos)·inv_freq.
func ropeTables(cfg Config) (cos, sin []float32) {
	hd := cfg.HeadDim()
	half := hd / 2
	inv := make([]float32, half)
	for j := range inv {
		e := float32(2*j) / float32(hd)
		inv[j] = 1 / float32(math.Pow(cfg.RopeTheta, float64(e)))
	}
	n := cfg.MaxPositionEmbeddings
	cos, sin = make([]float32, n*half), make([]float32, n*half)
	for p := 0; p < n; p++ {
		for j := 0; j < half; j++ {
			a := float32(p) * inv[j]
			cos[p*half+j] = float32(math.Cos(float64(a)))
			sin[p*half+j] = float32(math.Sin(float64(a)))
		}
	}
	return cos, sin
}

// New returns a model with Hugging Face's initialisation: linear and
// embedding weights ~ N(0, initializer_range), norm gains 1, from seed.
func New(cfg Config, be Backend, seed uint64) (*Model, error) {
	m, err := build(cfg, be)
	if err != nil {
		return nil, fmt.Errorf("new model: %w", err)
	}
	std := cfg.InitializerRange
	if std == 0 {
		std = 0.02
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	for _, p := range m.params {
		host := make([]float32, p.Size())
		for i := range host {
			if p.Kind == KindNorm {
				host[i] = 1
			} else {
				host[i] = float32(rng.NormFloat64() * std)
			}
		}
		be.Upload(p.W, host)
	}
	return m, nil
}

// Clone copies the weights into a new model on be (which may be the same
// backend or, typically, another CPU backend with fewer threads).
func (m *Model) Clone(be Backend) (*Model, error) {
	c, err := build(m.Config, be)
	if err != nil {
		return nil, fmt.Errorf("clone model: %w", err)
	}
	for i, p := range m.params {
		host := make([]float32, p.Size())
		m.be.Download(host, p.W)
		be.Upload(c.params[i].W, host)
	}
	return c, nil
}

// Tensors downloads every parameter, keyed by its Hugging Face name.
func (m *Model) Tensors() map[string]SafeTensor {
	out := make(map[string]SafeTensor, len(m.params))
	for _, p := range m.params {
		host := make([]float32, p.Size())
		m.be.Download(host, p.W)
		out[p.Name] = SafeTensor{Shape: append([]int(nil), p.Shape...), Data: host}
	}
	return out
}

// SetTensors uploads weights by name; every parameter must be present with
// its exact shape. When the embeddings are tied, lm_head.weight is ignored;
// rotary inv_freq buffers of older checkpoints are ignored too.
func (m *Model) SetTensors(ts map[string]SafeTensor) error {
	known := map[string]bool{}
	for _, p := range m.params {
		known[p.Name] = true
		t, ok := ts[p.Name]
		if !ok {
			return fmt.Errorf("missing tensor %s", p.Name)
		}
		if !equalShape(t.Shape, p.Shape) {
			return fmt.Errorf("tensor %s: shape %v, want %v", p.Name, t.Shape, p.Shape)
		}
	}
	for name := range ts {
		if known[name] || (name == "lm_head.weight" && m.Config.TieWordEmbeddings) || filepath.Ext(name) == ".inv_freq" {
			continue
		}
		return fmt.Errorf("unexpected tensor %s", name)
	}
	for _, p := range m.params {
		m.be.Upload(p.W, ts[p.Name].Data)
	}
	return nil
}

func equalShape(a, b []int) bool {
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

// Save writes model.safetensors (F32), config.json and
// generation_config.json into dir, creating it if needed.
func (m *Model) Save(dir string) error { return m.SaveDType(dir, "float32") }

// SaveDType is Save with the weights stored as dtype: "float32", or
// "bfloat16" (rounded to nearest even; config.json's torch_dtype says so).
func (m *Model) SaveDType(dir, dtype string) error {
	if dtype != "float32" && dtype != "bfloat16" {
		return fmt.Errorf("save model: dtype %q (want float32 or bfloat16)", dtype)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	bf16 := dtype == "bfloat16"
	if err := WriteSafetensors(filepath.Join(dir, "model.safetensors"), m.Tensors(), map[string]string{"format": "pt"}, bf16); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	if err := writeConfig(dir, m.Config, dtype); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	return nil
}

// Load reads a model directory written by Save or by transformers
// (config.json + model.safetensors in F32, F16 or BF16).
func Load(dir string, be Backend) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	ts, _, err := ReadSafetensors(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	m, err := build(cfg, be)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", dir, err)
	}
	if err := m.SetTensors(ts); err != nil {
		return nil, fmt.Errorf("load model %s: %w", dir, err)
	}
	return m, nil
}

// Batch is a packed batch of B sequences of T positions, row-major [B*T].
type Batch struct {
	B, T int
	// Tokens are the inputs; Targets the next tokens (-1: no loss).
	Tokens, Targets []int32
	// Weights are w_t·M_t per position: the loss weight (0 masks).
	Weights []float32
	// DocIDs: document per position (-1 = padding); attention never
	// crosses documents. Positions restart at 0 for each document.
	DocIDs, Positions []int32
	// Buckets is the loss bucket of each position with a target
	// (< MaxBuckets; ignored where the target is -1); may be
	// nil, meaning bucket 0 everywhere.
	Buckets []uint8
}

// ErrNoLoss reports a step whose positions all have zero weight or no target.
var ErrNoLoss = errors.New("model: batch has no weighted target")

// Validate checks lengths and ranges against cfg.
func (b *Batch) Validate(cfg Config) error {
	n := b.B * b.T
	if b.B <= 0 || b.T <= 0 {
		return fmt.Errorf("batch: B=%d T=%d must be positive", b.B, b.T)
	}
	if len(b.Tokens) != n || len(b.Targets) != n || len(b.Weights) != n || len(b.DocIDs) != n || len(b.Positions) != n {
		return fmt.Errorf("batch: tokens, targets, weights, doc ids and positions must have B*T=%d entries", n)
	}
	if b.Buckets != nil && len(b.Buckets) != n {
		return fmt.Errorf("batch: buckets must have B*T=%d entries", n)
	}
	for i := 0; i < n; i++ {
		if t := b.Tokens[i]; t < 0 || int(t) >= cfg.VocabSize {
			return fmt.Errorf("batch: token %d at %d out of vocabulary", t, i)
		}
		if t := b.Targets[i]; t < -1 || int(t) >= cfg.VocabSize {
			return fmt.Errorf("batch: target %d at %d out of range", t, i)
		}
		if p := b.Positions[i]; p < 0 || int(p) >= cfg.MaxPositionEmbeddings {
			return fmt.Errorf("batch: position %d at %d outside [0,%d)", p, i, cfg.MaxPositionEmbeddings)
		}
		if w := b.Weights[i]; !(w >= 0) || math.IsInf(float64(w), 0) {
			return fmt.Errorf("batch: weight %v at %d not finite and non-negative", w, i)
		}
		// A position without a target carries no loss, so its bucket is
		// never read (packers mark padding with an out-of-range slot).
		if b.Buckets != nil && b.Targets[i] >= 0 && b.Buckets[i] >= MaxBuckets {
			return fmt.Errorf("batch: bucket %d at %d >= %d", b.Buckets[i], i, MaxBuckets)
		}
	}
	return nil
}

func (b *Batch) bucket(i int) int {
	if b.Buckets == nil {
		return 0
	}
	return int(b.Buckets[i])
}

// lossWeight is Σ w over positions with a target, in position order.
func (b *Batch) lossWeight() float64 {
	var s float64
	for i, t := range b.Targets {
		if t >= 0 {
			s += float64(b.Weights[i])
		}
	}
	return s
}

// SingleDocBatch builds a batch with one document per row, positions 0..T-1
// and unit weights, targets being the next token (-1 at the end). Tests,
// demos and benchmarks use it.
func SingleDocBatch(B, T int, tokens []int32) Batch {
	b := Batch{B: B, T: T, Tokens: tokens, Targets: make([]int32, B*T), Weights: make([]float32, B*T),
		DocIDs: make([]int32, B*T), Positions: make([]int32, B*T)}
	for r := 0; r < B; r++ {
		for t := 0; t < T; t++ {
			i := r*T + t
			b.Positions[i] = int32(t)
			b.Targets[i] = -1
			if t+1 < T {
				b.Targets[i] = tokens[i+1]
				b.Weights[i] = 1
			}
		}
	}
	return b
}

package model

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
)

// Schedule is a learning-rate schedule, a function of the update index
// (0 for the first update). Kind is "constant" (linear warmup then
// constant), "cosine" (warmup then cosine from PeakLR to MinLR at Total) or
// "wsd" (warmup-stable-decay: warmup, constant, then linear to MinLR over
// the last Decay steps of Total).
type Schedule struct {
	Kind   string  `json:"kind"`
	PeakLR float64 `json:"peak_lr"`
	MinLR  float64 `json:"min_lr"`
	Warmup int     `json:"warmup"`
	Total  int     `json:"total"`
	Decay  int     `json:"decay"`
}

// LR returns the learning rate of update step (0-based).
func (s Schedule) LR(step int) float64 {
	if step < s.Warmup {
		return s.PeakLR * float64(step+1) / float64(s.Warmup)
	}
	switch s.Kind {
	case "cosine":
		span := s.Total - s.Warmup
		if span <= 0 {
			return s.MinLR
		}
		p := math.Min(1, float64(step-s.Warmup)/float64(span))
		return s.MinLR + (s.PeakLR-s.MinLR)*0.5*(1+math.Cos(math.Pi*p))
	case "wsd":
		start := s.Total - s.Decay
		if step < start || s.Decay <= 0 {
			return s.PeakLR
		}
		p := math.Min(1, float64(step-start)/float64(s.Decay))
		return s.PeakLR + (s.MinLR-s.PeakLR)*p
	default:
		return s.PeakLR
	}
}

// Validate checks the schedule's kind and values.
func (s Schedule) Validate() error {
	switch s.Kind {
	case "constant", "cosine", "wsd", "":
	default:
		return fmt.Errorf("schedule: unknown kind %q", s.Kind)
	}
	if s.PeakLR < 0 || s.MinLR < 0 || s.Warmup < 0 || s.Total < 0 || s.Decay < 0 {
		return fmt.Errorf("schedule: negative value in %+v", s)
	}
	return nil
}

// TrainOptions configure the optimiser.
type TrainOptions struct {
	Schedule Schedule `json:"schedule"`
	Beta1    float64  `json:"beta1"`
	Beta2    float64  `json:"beta2"`
	Eps      float64  `json:"eps"`
	// WeightDecay is decoupled (AdamW); never applied to norm gains.
	WeightDecay float64 `json:"weight_decay"`
	// DecayEmbeddings applies WeightDecay to the embedding (and tied head).
	DecayEmbeddings bool `json:"decay_embeddings"`
	// ClipNorm clips the global gradient norm (0 disables).
	ClipNorm float64 `json:"clip_norm"`
	// Seed seeds the trainer's RNG (Rand), whose state is checkpointed.
	Seed uint64 `json:"seed"`
}

// DefaultTrainOptions are the usual LLaMA post-training settings.
func DefaultTrainOptions() TrainOptions {
	return TrainOptions{
		Schedule: Schedule{Kind: "cosine", PeakLR: 3e-4, MinLR: 3e-5, Warmup: 100, Total: 10000},
		Beta1:    0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, ClipNorm: 1.0,
	}
}

// StepResult reports one optimiser step.
type StepResult struct {
	// Loss is Σ w·nll / Σ w over all micro-batches.
	Loss float64
	// BucketLoss is Σ w·nll per bucket, BucketWeight Σ w per bucket
	// (their ratio is the bucket's mean loss), BucketTokens the count of
	// positions with a target and non-zero weight.
	BucketLoss, BucketWeight [MaxBuckets]float64
	BucketTokens             [MaxBuckets]int
	// Tokens counts positions with a target and non-zero weight.
	Tokens int
	// GradNorm is the global gradient norm before clipping.
	GradNorm float64
	// LR is the learning rate used by this update.
	LR float64
	// Step is the number of updates done, this one included.
	Step int
}

// Trainer runs AdamW steps on a Model. It is not safe for concurrent use;
// snapshot the model with Clone for concurrent evaluation.
type Trainer struct {
	m     *Model
	opt   TrainOptions
	grads []Tensor
	mom   []Tensor // first moments
	vel   []Tensor // second moments
	step  int
	pcg   *rand.PCG
	rng   *rand.Rand
	ws    *workspace
}

// NewTrainer prepares the optimiser state (zero moments) for m.
func NewTrainer(m *Model, opt TrainOptions) (*Trainer, error) {
	if err := opt.Schedule.Validate(); err != nil {
		return nil, fmt.Errorf("new trainer: %w", err)
	}
	if opt.Beta1 < 0 || opt.Beta1 >= 1 || opt.Beta2 < 0 || opt.Beta2 >= 1 || opt.Eps <= 0 {
		return nil, fmt.Errorf("new trainer: betas must be in [0,1) and eps > 0")
	}
	t := &Trainer{m: m, opt: opt, pcg: rand.NewPCG(opt.Seed, 0x7ea1)}
	t.rng = rand.New(t.pcg)
	for _, p := range m.params {
		t.grads = append(t.grads, m.be.Alloc(p.Size()))
		t.mom = append(t.mom, m.be.Alloc(p.Size()))
		t.vel = append(t.vel, m.be.Alloc(p.Size()))
	}
	return t, nil
}

// Model returns the model being trained.
func (t *Trainer) Model() *Model { return t.m }

// StepCount is the number of updates done.
func (t *Trainer) StepCount() int { return t.step }

// Rand is the trainer's RNG, for callers that need randomness that must
// resume exactly (its state is part of the training state).
func (t *Trainer) Rand() *rand.Rand { return t.rng }

func (t *Trainer) workspace(B, T int) *workspace {
	if t.ws == nil || t.ws.B != B || t.ws.T != T {
		if t.ws != nil {
			t.ws.free(t.m.be)
		}
		t.ws = newWorkspace(t.m, B, T, true)
	}
	return t.ws
}

// Step accumulates gradients over the micro-batches, normalises the loss by
// their total weight, clips, and applies one AdamW update. On error
// (invalid batch, cancelled context, no weighted target) the weights are
// unchanged.
func (t *Trainer) Step(ctx context.Context, micro []Batch) (StepResult, error) {
	var res StepResult
	if len(micro) == 0 {
		return res, fmt.Errorf("train step: no micro-batches")
	}
	var total float64
	for i := range micro {
		if err := micro[i].Validate(t.m.Config); err != nil {
			return res, fmt.Errorf("train step: micro-batch %d: %w", i, err)
		}
		total += micro[i].lossWeight()
	}
	if total <= 0 {
		return res, fmt.Errorf("train step: %w", ErrNoLoss)
	}
	be := t.m.be
	for _, g := range t.grads {
		be.Zero(g)
	}
	var wsum float64
	for i := range micro {
		if err := ctx.Err(); err != nil {
			return StepResult{}, fmt.Errorf("train step: %w", err)
		}
		b := &micro[i]
		ws := t.workspace(b.B, b.T)
		ws.load(be, b)
		t.m.forward(ws)
		be.CrossEntropy(ws.losses, ws.logits, ws.targets, ws.weights, ws.N, t.m.Config.VocabSize, float32(1/total), true)
		t.m.backward(ws, t.grads)
		// The losses are read after the backward is queued, so a device
		// does not idle between the two while the host sums them.
		wsum += accumulate(&res, be, ws, b)
	}
	if err := ctx.Err(); err != nil {
		return StepResult{}, fmt.Errorf("train step: %w", err)
	}
	res.Loss = wsum / total
	res.GradNorm = math.Sqrt(be.SumSquares(t.grads...))
	if t.opt.ClipNorm > 0 {
		// torch.nn.utils.clip_grad_norm_: scale by max/(norm+1e-6) when < 1.
		if coef := t.opt.ClipNorm / (res.GradNorm + 1e-6); coef < 1 {
			for _, g := range t.grads {
				be.Scale(g, float32(coef))
			}
		}
	}
	res.LR = t.opt.Schedule.LR(t.step)
	t.step++
	for i, p := range t.m.params {
		wd := t.opt.WeightDecay
		if p.Kind == KindNorm || (p.Kind == KindEmbedding && !t.opt.DecayEmbeddings) {
			wd = 0
		}
		be.AdamW(p.W, t.grads[i], t.mom[i], t.vel[i], AdamWParams{LR: res.LR, Beta1: t.opt.Beta1, Beta2: t.opt.Beta2, Eps: t.opt.Eps, WeightDecay: wd, Step: t.step})
	}
	res.Step = t.step
	return res, nil
}

// accumulate downloads the per-position losses of ws and adds them to the
// totals of res in position order; it returns Σ w·nll of the batch.
func accumulate(res *StepResult, be Backend, ws *workspace, b *Batch) float64 {
	losses := make([]float32, ws.N)
	be.Download(losses, ws.losses)
	var s float64
	for i, tg := range b.Targets {
		if tg < 0 {
			continue
		}
		w := float64(b.Weights[i])
		k := b.bucket(i)
		l := w * float64(losses[i])
		s += l
		res.BucketLoss[k] += l
		res.BucketWeight[k] += w
		if w > 0 {
			res.BucketTokens[k]++
			res.Tokens++
		}
	}
	return s
}

// Gradients downloads the gradients of the last Step (after clipping),
// keyed by parameter name. Tests and parity checks use it.
func (t *Trainer) Gradients() map[string]SafeTensor {
	out := map[string]SafeTensor{}
	for i, p := range t.m.params {
		host := make([]float32, p.Size())
		t.m.be.Download(host, t.grads[i])
		out[p.Name] = SafeTensor{Shape: append([]int(nil), p.Shape...), Data: host}
	}
	return out
}

// trainingMeta is the __metadata__ of a training-state file.
type trainingMeta struct {
	Step    int          `json:"step"`
	RNG     string       `json:"rng"`
	Options TrainOptions `json:"options"`
	Params  int          `json:"params"`
}

// SaveTrainingState writes the optimiser moments, the step (the schedule
// position) and the RNG state to path atomically (temp file, fsync, rename,
// fsync dir). The weights are saved separately with Model.Save.
func (t *Trainer) SaveTrainingState(path string) error {
	st, err := t.Snapshot()
	if err != nil {
		return err
	}
	return st.Save(path)
}

// TrainingState is a host copy of the optimiser state (AdamW moments, step,
// RNG, options). Taking it between two steps and writing it elsewhere lets
// a checkpoint go to disk while training continues.
type TrainingState struct {
	tensors map[string]SafeTensor
	meta    map[string]string
}

// Snapshot copies the training state to host memory.
func (t *Trainer) Snapshot() (*TrainingState, error) {
	ts := map[string]SafeTensor{}
	for i, p := range t.m.params {
		for _, mv := range []struct {
			prefix string
			x      Tensor
		}{{"adam_m.", t.mom[i]}, {"adam_v.", t.vel[i]}} {
			host := make([]float32, p.Size())
			t.m.be.Download(host, mv.x)
			ts[mv.prefix+p.Name] = SafeTensor{Shape: append([]int(nil), p.Shape...), Data: host}
		}
	}
	rs, err := t.pcg.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("snapshot training state: %w", err)
	}
	meta, err := json.Marshal(trainingMeta{Step: t.step, RNG: base64.StdEncoding.EncodeToString(rs), Options: t.opt, Params: len(t.m.params)})
	if err != nil {
		return nil, fmt.Errorf("snapshot training state: %w", err)
	}
	return &TrainingState{tensors: ts, meta: map[string]string{"replayd_training_state": string(meta), "step": strconv.Itoa(t.step)}}, nil
}

// Save writes the state atomically (what LoadTrainingState reads).
func (s *TrainingState) Save(path string) error {
	if err := WriteSafetensors(path, s.tensors, s.meta, false); err != nil {
		return fmt.Errorf("save training state: %w", err)
	}
	return nil
}

// LoadTrainingState restores what SaveTrainingState wrote. The options
// saved with it replace the trainer's (schedule position included).
func (t *Trainer) LoadTrainingState(path string) error {
	ts, meta, err := ReadSafetensors(path)
	if err != nil {
		return fmt.Errorf("load training state: %w", err)
	}
	var tm trainingMeta
	if err := json.Unmarshal([]byte(meta["replayd_training_state"]), &tm); err != nil {
		return fmt.Errorf("load training state %s: metadata: %w", path, err)
	}
	if tm.Params != len(t.m.params) || len(ts) != 2*len(t.m.params) {
		return fmt.Errorf("load training state %s: %d tensors for %d parameters", path, len(ts), len(t.m.params))
	}
	for _, p := range t.m.params {
		for _, prefix := range []string{"adam_m.", "adam_v."} {
			x, ok := ts[prefix+p.Name]
			if !ok || !equalShape(x.Shape, p.Shape) {
				return fmt.Errorf("load training state %s: %s%s missing or of wrong shape", path, prefix, p.Name)
			}
		}
	}
	rs, err := base64.StdEncoding.DecodeString(tm.RNG)
	if err != nil {
		return fmt.Errorf("load training state %s: rng: %w", path, err)
	}
	pcg := rand.NewPCG(0, 0)
	if err := pcg.UnmarshalBinary(rs); err != nil {
		return fmt.Errorf("load training state %s: rng: %w", path, err)
	}
	for i, p := range t.m.params {
		t.m.be.Upload(t.mom[i], ts["adam_m."+p.Name].Data)
		t.m.be.Upload(t.vel[i], ts["adam_v."+p.Name].Data)
	}
	*t.pcg = *pcg
	t.step, t.opt = tm.Step, tm.Options
	return nil
}

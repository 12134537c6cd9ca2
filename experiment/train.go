package experiment

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"replayd/ingest"
	"replayd/mixer"
	"replayd/model"
	"replayd/policies"
)

// TrainStats summarise one training run.
type TrainStats struct {
	// Steps is the number of optimiser steps taken.
	Steps int
	// Tokens is the number of weighted target positions trained on.
	Tokens int64
	// SlotTokens splits Tokens by mixer slot (bucket × fresh/replay).
	SlotTokens [mixer.NumSlots]int64
	// FinalLoss is the mean training loss of the last 10% of steps.
	FinalLoss float64
	// Epochs counts the extra passes over the stream started because the
	// policy's fresh data ran out before the budget.
	Epochs int
	// Seconds is the wall time of training.
	Seconds float64
}

// runSpec is one training run: phases on a stream made of corpus.
type runSpec struct {
	label   string
	phases  []resolvedPhase
	sftMask bool
	seed    uint64
	train   Train
}

// stream builds the run's log: every sample of the corpus in an order
// shuffled by seed (the same for every variant of a seed), SFT masks
// dropped when the variant trains without them.
func stream(c *Corpus, seed uint64, sftMask bool) (*mixer.MemLog, []ingest.Sample) {
	var all []ingest.Sample
	for b := range c.Buckets {
		all = append(all, c.Buckets[b]...)
	}
	r := rand.New(rand.NewPCG(seed, 0x10c))
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	log := &mixer.MemLog{}
	out := make([]ingest.Sample, len(all))
	for i, s := range all {
		if !sftMask && s.Kind == ingest.KindSFT {
			s = unmasked(s)
		}
		out[i] = log.Append(s)
	}
	return log, out
}

// reappend appends samples to log again under new sequences.
func reappend(log *mixer.MemLog, samples []ingest.Sample) []ingest.Sample {
	out := make([]ingest.Sample, len(samples))
	for i, s := range samples {
		out[i] = log.Append(s)
	}
	return out
}

// loadPolicy loads a built-in policy with its config blob.
func loadPolicy(ctx context.Context, host *mixer.Host, ph resolvedPhase) (*mixer.Policy, error) {
	wasm, err := policies.Builtin(ph.policy)
	if err != nil {
		return nil, err
	}
	p, err := host.Load(ctx, ph.policy, wasm, mixer.LoadOptions{Config: ph.config})
	if err != nil {
		return nil, fmt.Errorf("load policy %s (config %s): %w", ph.policy, ph.config, err)
	}
	return p, nil
}

// toModelBatch shares a mixer batch's slices with a model batch (padding's
// PadSlot bucket is ignored by the model: padding has no target).
func toModelBatch(b *mixer.Batch) model.Batch {
	return model.Batch{B: b.B, T: b.T, Tokens: b.Tokens, Targets: b.Targets, Weights: b.Weights,
		DocIDs: b.DocIDs, Positions: b.Positions, Buckets: b.Buckets}
}

// trainRun trains m in place: one mixer over the run's stream, one policy
// per phase swapped in at the phase boundary (so replay pools and queues
// carry over, as in the daemon), a cosine schedule over all phases.
func trainRun(ctx context.Context, m *model.Model, c *Corpus, spec runSpec, progress io.Writer) (TrainStats, error) {
	var st TrainStats
	start := time.Now()
	total := 0
	for _, ph := range spec.phases {
		total += ph.steps
	}
	if total <= 0 {
		return st, errors.New("run has no steps")
	}
	host, err := mixer.NewHost(ctx, mixer.HostConfig{Seed: spec.seed})
	if err != nil {
		return st, err
	}
	defer host.Close(context.WithoutCancel(ctx))

	log, samples := stream(c, spec.seed, spec.sftMask)
	pol, err := loadPolicy(ctx, host, spec.phases[0])
	if err != nil {
		return st, err
	}
	mx, err := mixer.New(mixer.Config{B: spec.train.Batch, T: spec.train.SeqLen, Seed: spec.seed}, log, pol)
	if err != nil {
		return st, fmt.Errorf("mixer: %w", err)
	}
	if err := mx.Add(samples); err != nil {
		return st, err
	}
	t := spec.train
	opt := model.DefaultTrainOptions()
	opt.Schedule = model.Schedule{Kind: "cosine", PeakLR: t.LR, MinLR: t.MinLR, Warmup: min(t.Warmup, total-1), Total: total}
	opt.WeightDecay, opt.ClipNorm, opt.Seed = t.WeightDecay, t.ClipNorm, spec.seed
	tr, err := model.NewTrainer(m, opt)
	if err != nil {
		return st, err
	}
	logEvery := t.LogEvery
	if logEvery <= 0 {
		logEvery = 50
	}
	tail := max(1, total/10)
	var tailLoss float64
	var tailN int
	step := 0
	for pi, ph := range spec.phases {
		if pi > 0 {
			next, err := loadPolicy(ctx, host, ph)
			if err != nil {
				return st, err
			}
			mx.Swap(next)
		}
		for k := 0; k < ph.steps; k++ {
			b, err := nextBatch(ctx, mx)
			if errors.Is(err, errStalled) {
				// The fresh data the policy trains on ran out: start
				// another epoch of the stream (new log positions, as a
				// producer re-sending the data would), once per stall.
				st.Epochs++
				if err = mx.Add(reappend(log, samples)); err == nil {
					b, err = nextBatch(ctx, mx)
				}
			}
			if err != nil {
				return st, fmt.Errorf("%s step %d: mixer: %w", spec.label, step, err)
			}
			res, err := tr.Step(ctx, []model.Batch{toModelBatch(b)})
			step++
			if errors.Is(err, model.ErrNoLoss) {
				continue
			}
			if err != nil {
				return st, fmt.Errorf("%s step %d: %w", spec.label, step, err)
			}
			st.Steps++
			st.Tokens += int64(res.Tokens)
			for s := range mixer.NumSlots {
				st.SlotTokens[s] += int64(res.BucketTokens[s])
			}
			if step > total-tail {
				tailLoss += res.Loss
				tailN++
			}
			if progress != nil && (step%logEvery == 0 || step == total) {
				fmt.Fprintf(progress, "%s [%s] step %d/%d loss %.4f lr %.2e %.0f tok/s\n", spec.label, ph.name, step, total,
					res.Loss, res.LR, float64(step*t.Batch*t.SeqLen)/time.Since(start).Seconds())
			}
		}
	}
	if tailN > 0 {
		st.FinalLoss = tailLoss / float64(tailN)
	}
	st.Seconds = time.Since(start).Seconds()
	return st, nil
}

// errStalled means the policy kept nothing the mixture can draw: with every
// sample already handed in, the mixer would wait forever.
var errStalled = errors.New("the policy kept no sample it can train on (mixer has no data and none will come)")

// nextBatch is mx.Next for an offline stream. Next blocks while the mixer
// has no data, waiting for samples that, offline, never come; so a watcher
// checks (every 50ms, a poll interval, not a deadline) whether the mixer
// has decided everything and holds nothing, and then cancels the call.
func nextBatch(ctx context.Context, mx *mixer.Mixer) (*mixer.Batch, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		b   *mixer.Batch
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := mx.Next(ctx)
		done <- result{b, err}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	stalled := false
	for {
		select {
		case r := <-done:
			if stalled && r.err != nil {
				return nil, errStalled
			}
			return r.b, r.err
		case <-tick.C:
			if !stalled && mx.Waiting() == 0 && empty(mx.DryRunInput().Avail) {
				stalled = true
				cancel()
			}
		}
	}
}

func empty(avail [mixer.NumSlots]uint32) bool {
	for _, a := range avail {
		if a > 0 {
			return false
		}
	}
	return true
}

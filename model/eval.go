package model

import (
	"context"
	"fmt"
)

// LossResult is the held-out loss of a set of batches.
type LossResult struct {
	// Loss is Σ w·nll / Σ w.
	Loss                     float64
	BucketLoss, BucketWeight [MaxBuckets]float64
	BucketTokens             [MaxBuckets]int
	Tokens                   int
}

// LossOn computes the weighted loss over batches without gradients. The
// parallelism is the model's backend's: evaluate on a Clone with a
// one-thread backend so evaluation does not starve training.
func (m *Model) LossOn(ctx context.Context, batches []Batch) (LossResult, error) {
	var acc StepResult
	var wsum, total float64
	var ws *workspace
	defer func() {
		if ws != nil {
			ws.free(m.be)
		}
	}()
	for i := range batches {
		if err := ctx.Err(); err != nil {
			return LossResult{}, fmt.Errorf("loss: %w", err)
		}
		b := &batches[i]
		if err := b.Validate(m.Config); err != nil {
			return LossResult{}, fmt.Errorf("loss: batch %d: %w", i, err)
		}
		if ws == nil || ws.B != b.B || ws.T != b.T {
			if ws != nil {
				ws.free(m.be)
			}
			ws = newWorkspace(m, b.B, b.T, false)
		}
		ws.load(m.be, b)
		m.forward(ws)
		m.be.CrossEntropy(ws.losses, ws.logits, ws.targets, ws.weights, ws.N, m.Config.VocabSize, 1, false)
		wsum += accumulate(&acc, m.be, ws, b)
		total += b.lossWeight()
	}
	if total <= 0 {
		return LossResult{}, fmt.Errorf("loss: %w", ErrNoLoss)
	}
	return LossResult{Loss: wsum / total, BucketLoss: acc.BucketLoss, BucketWeight: acc.BucketWeight, BucketTokens: acc.BucketTokens, Tokens: acc.Tokens}, nil
}

// Logits returns the logits of a batch, [B*T*vocab] row-major, and the
// per-position negative log-likelihoods (0 where the target is -1).
func (m *Model) Logits(ctx context.Context, b Batch) (logits, nll []float32, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("logits: %w", err)
	}
	if err := b.Validate(m.Config); err != nil {
		return nil, nil, fmt.Errorf("logits: %w", err)
	}
	ws := newWorkspace(m, b.B, b.T, false)
	defer ws.free(m.be)
	ws.load(m.be, &b)
	m.forward(ws)
	logits = make([]float32, ws.N*m.Config.VocabSize)
	m.be.Download(logits, ws.logits)
	m.be.CrossEntropy(ws.losses, ws.logits, ws.targets, ws.weights, ws.N, m.Config.VocabSize, 1, false)
	nll = make([]float32, ws.N)
	m.be.Download(nll, ws.losses)
	return logits, nll, nil
}

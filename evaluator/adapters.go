package evaluator

import (
	"context"
	"errors"
	"fmt"

	"replayd/model"
	"replayd/tokenizer"
)

// ModelAdapter adapts a model snapshot to Model. One evaluation at a time
// uses it (Workers = 1); its backend has the evaluation's share of cores.
type ModelAdapter struct {
	M *model.Model
}

// NLL scores one document: inputs tokens[:n-1], targets tokens[1:],
// weighted by the targets' mask. Documents longer than the model's
// positions are cut.
func (e ModelAdapter) NLL(ctx context.Context, tokens []int32, mask []uint8) (float64, int, error) {
	maxT := e.M.Config.MaxPositionEmbeddings
	if len(tokens) > maxT+1 {
		tokens, mask = tokens[:maxT+1], mask[:maxT+1]
	}
	T := len(tokens) - 1
	if T < 1 {
		return 0, 0, nil
	}
	b := model.Batch{B: 1, T: T, Tokens: make([]int32, T), Targets: make([]int32, T), Weights: make([]float32, T),
		DocIDs: make([]int32, T), Positions: make([]int32, T), Buckets: make([]uint8, T)}
	var w float64
	for i := 0; i < T; i++ {
		b.Tokens[i], b.Targets[i], b.Positions[i] = tokens[i], tokens[i+1], int32(i)
		if mask[i+1] != 0 {
			b.Weights[i] = 1
			w++
		}
	}
	if w == 0 {
		return 0, 0, nil
	}
	res, err := e.M.LossOn(ctx, []model.Batch{b})
	if errors.Is(err, model.ErrNoLoss) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	return res.Loss * w, int(w), nil
}

// Generate decodes greedily; a prompt too long for the model keeps its end.
func (e ModelAdapter) Generate(ctx context.Context, prompt []int32, maxNew int, stop []int32) ([]int32, error) {
	room := e.M.Config.MaxPositionEmbeddings - maxNew
	if room < 1 {
		return nil, fmt.Errorf("generate: %d new tokens leave no room for a prompt", maxNew)
	}
	if len(prompt) > room {
		prompt = prompt[len(prompt)-room:]
	}
	return e.M.Generate(ctx, prompt, maxNew, model.GenerateOptions{StopIDs: stop})
}

// ChatCodec joins the chat template and the tokenizer's decoder into a Codec.
type ChatCodec struct {
	*tokenizer.ChatTemplate
	Tok *tokenizer.Tokenizer
}

// Decode renders ids as text.
func (c ChatCodec) Decode(ids []int32) string { return c.Tok.Decode(ids) }

package experiment

import (
	"context"
	"errors"
	"fmt"
	"math"

	"replayd/evaluator"
	"replayd/ingest"
	"replayd/model"
	"replayd/tokenizer"
)

// EvalModel adapts a model to evaluator.Model, as the daemon's adapter
// does (daemon/evalmodel.go; that one is unexported and daemon may not be
// imported from here). One evaluation at a time uses it.
type EvalModel struct {
	M *model.Model
}

// NLL scores one document: inputs tokens[:n-1], targets tokens[1:],
// weighted by the targets' mask. Documents longer than the model's
// positions are cut.
func (e EvalModel) NLL(ctx context.Context, tokens []int32, mask []uint8) (float64, int, error) {
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
func (e EvalModel) Generate(ctx context.Context, prompt []int32, maxNew int, stop []int32) ([]int32, error) {
	room := e.M.Config.MaxPositionEmbeddings - maxNew
	if room < 1 {
		return nil, fmt.Errorf("generate: %d new tokens leave no room for a prompt", maxNew)
	}
	if len(prompt) > room {
		prompt = prompt[len(prompt)-room:]
	}
	return e.M.Generate(ctx, prompt, maxNew, model.GenerateOptions{StopIDs: stop})
}

// EvalCodec joins the chat template and the tokenizer's decoder into an
// evaluator.Codec.
type EvalCodec struct {
	*tokenizer.ChatTemplate
	Tok *tokenizer.Tokenizer
}

// Decode renders ids as text.
func (c EvalCodec) Decode(ids []int32) string { return c.Tok.Decode(ids) }

// evaluate runs the suites and, when there is a holdout, the held-out
// answer loss: the mean NLL of the assistant tokens of held-out general
// instructions (teacher-forced, instruction masked), a direct measure of
// how much of the general instruction-following the base had is lost.
func evaluate(ctx context.Context, m *model.Model, tok *tokenizer.Tokenizer, ct *tokenizer.ChatTemplate,
	suites []evaluator.SuiteConfig, holdout [][]byte, holdoutName string) (evaluator.Scores, error) {
	ev := &evaluator.Evaluator{Suites: suites, Workers: 1}
	em := EvalModel{M: m}
	scores := evaluator.Scores{}
	if len(suites) > 0 {
		rep, err := ev.Run(ctx, em, EvalCodec{ChatTemplate: ct, Tok: tok})
		if err != nil {
			return nil, fmt.Errorf("evaluate: %w", err)
		}
		scores = rep.Scores
	}
	if len(holdout) > 0 {
		var sum float64
		var n int
		for _, line := range holdout {
			ss := encodeLine(ct, ingest.KindSFT, ingest.BucketSFTGeneral, line, 0)
			if len(ss) == 0 {
				continue
			}
			toks, mask := answerWindow(ss[0].Tokens, ss[0].LossMask, m.Config.MaxPositionEmbeddings+1)
			l, k, err := em.NLL(ctx, toks, mask)
			if err != nil {
				return nil, fmt.Errorf("evaluate %s: %w", holdoutName, err)
			}
			sum += l
			n += k
		}
		if n == 0 {
			return nil, fmt.Errorf("evaluate %s: no answer token scored", holdoutName)
		}
		scores[holdoutName+"/answer_loss"] = sum / float64(n)
		scores["loss/general_sft"] = sum / float64(n)
	}
	for k, v := range scores {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("evaluate: score %s is %v", k, v)
		}
	}
	return scores, nil
}

// answerWindow cuts a conversation longer than n tokens to n tokens that
// start at most n/2 before the first answer token, so a long instruction
// still leaves answer tokens to score, with as much prompt as fits.
func answerWindow(toks []int32, mask []uint8, n int) ([]int32, []uint8) {
	if len(toks) <= n {
		return toks, mask
	}
	first := 0
	for i, m := range mask {
		if m != 0 {
			first = i
			break
		}
	}
	lo := max(0, min(first-n/2, len(toks)-n))
	return toks[lo : lo+n], mask[lo : lo+n]
}

package experiment

import (
	"context"
	"fmt"
	"math"

	"replayd/evaluator"
	"replayd/ingest"
	"replayd/model"
	"replayd/tokenizer"
)

// evaluate runs the suites and, when there is a holdout, the held-out
// answer loss: the mean NLL of the assistant tokens of held-out general
// instructions (teacher-forced, instruction masked), a direct measure of
// how much of the general instruction-following the base had is lost.
func evaluate(ctx context.Context, m *model.Model, tok *tokenizer.Tokenizer, ct *tokenizer.ChatTemplate,
	suites []evaluator.SuiteConfig, holdout [][]byte, holdoutName string) (evaluator.Scores, error) {
	ev := &evaluator.Evaluator{Suites: suites, Workers: 1}
	em := evaluator.ModelAdapter{M: m}
	scores := evaluator.Scores{}
	if len(suites) > 0 {
		rep, err := ev.Run(ctx, em, evaluator.ChatCodec{ChatTemplate: ct, Tok: tok})
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

// Package evaluator scores checkpoints on evaluation suites (held-out loss,
// exact match, ROUGE-1, entity F1), applies the publishing gate and publishes
// checkpoints that pass.
package evaluator

import (
	"fmt"
	"strings"
	"unicode"
)

// Metric names used in suite configs and results.
const (
	MetricLoss       = "loss"       // mean per-token negative log-likelihood
	MetricExact      = "exact"      // exact match of the normalised answer
	MetricLabel      = "label"      // exact match over a label set
	MetricROUGE1     = "rouge1"     // ROUGE-1 F1
	MetricEntityF1   = "entity_f1"  // micro entity-level F1 ("entity, TYPE" lines)
	MetricPerplexity = "perplexity" // exp(loss), reported beside loss
)

// Accumulator aggregates one metric over a suite's samples.
type Accumulator interface {
	// Add scores one prediction against its gold answer.
	Add(prediction, gold string)
	// Value is the suite-level score in [0, 1].
	Value() float64
	// N is the number of samples added.
	N() int
}

// NewAccumulator returns the accumulator of a generation metric. labels is
// the label set for MetricLabel; when empty it is collected from the golds.
func NewAccumulator(metric string, labels []string) (Accumulator, error) {
	switch metric {
	case MetricExact:
		return &meanAcc{score: exactMatch}, nil
	case MetricLabel:
		return &labelAcc{labels: normaliseAll(labels)}, nil
	case MetricROUGE1:
		return &meanAcc{score: ROUGE1F1}, nil
	case MetricEntityF1:
		return &entityAcc{}, nil
	}
	return nil, fmt.Errorf("unknown generation metric %q (want %s, %s, %s or %s)",
		metric, MetricExact, MetricLabel, MetricROUGE1, MetricEntityF1)
}

// Normalize lower-cases s, removes punctuation and the articles a, an, the,
// and collapses whitespace (the SQuAD answer normalisation).
func Normalize(s string) string {
	return strings.Join(normalizedWords(s), " ")
}

func normalizedWords(s string) []string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if unicode.IsPunct(r) || unicode.IsSymbol(r) {
			b.WriteByte(' ')
			continue
		}
		b.WriteRune(r)
	}
	words := strings.Fields(b.String())
	out := words[:0]
	for _, w := range words {
		if w == "a" || w == "an" || w == "the" {
			continue
		}
		out = append(out, w)
	}
	return out
}

func normaliseAll(xs []string) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		if n := Normalize(x); n != "" {
			out = append(out, n)
		}
	}
	return out
}

func exactMatch(pred, gold string) float64 {
	if Normalize(pred) == Normalize(gold) {
		return 1
	}
	return 0
}

// ROUGE1F1 is the unigram-overlap F1 between prediction and reference, over
// normalised words.
func ROUGE1F1(pred, ref string) float64 {
	p, r := normalizedWords(pred), normalizedWords(ref)
	if len(p) == 0 || len(r) == 0 {
		if len(p) == len(r) {
			return 1
		}
		return 0
	}
	counts := make(map[string]int, len(r))
	for _, w := range r {
		counts[w]++
	}
	overlap := 0
	for _, w := range p {
		if counts[w] > 0 {
			counts[w]--
			overlap++
		}
	}
	if overlap == 0 {
		return 0
	}
	prec := float64(overlap) / float64(len(p))
	rec := float64(overlap) / float64(len(r))
	return 2 * prec * rec / (prec + rec)
}

type meanAcc struct {
	score func(pred, gold string) float64
	sum   float64
	n     int
}

func (a *meanAcc) Add(pred, gold string) { a.sum += a.score(pred, gold); a.n++ }
func (a *meanAcc) N() int                { return a.n }
func (a *meanAcc) Value() float64 {
	if a.n == 0 {
		return 0
	}
	return a.sum / float64(a.n)
}

// labelAcc scores classification: the predicted label is the label word that
// occurs first in the normalised prediction, so "Positive." and "positive,
// because ..." both count as "positive" while free text with no label is wrong.
type labelAcc struct {
	labels     []string
	fromGold   bool
	correct, n int
}

func (a *labelAcc) Add(pred, gold string) {
	g := Normalize(gold)
	if len(a.labels) == 0 || a.fromGold {
		a.fromGold = true
		if !containsString(a.labels, g) {
			a.labels = append(a.labels, g)
		}
	}
	if PredictLabel(pred, a.labels) == g {
		a.correct++
	}
	a.n++
}
func (a *labelAcc) N() int { return a.n }
func (a *labelAcc) Value() float64 {
	if a.n == 0 {
		return 0
	}
	return float64(a.correct) / float64(a.n)
}

// PredictLabel returns the label (normalised) whose words occur earliest in the
// normalised prediction, or "" when none occurs.
func PredictLabel(pred string, labels []string) string {
	words := normalizedWords(pred)
	best, bestAt := "", len(words)+1
	for _, l := range labels {
		lw := strings.Fields(l)
		if len(lw) == 0 {
			continue
		}
		at := firstOccurrence(words, lw)
		if at < 0 {
			continue
		}
		if at < bestAt || (at == bestAt && len(l) > len(best)) {
			best, bestAt = l, at
		}
	}
	return best
}

func firstOccurrence(words, phrase []string) int {
	for i := 0; i+len(phrase) <= len(words); i++ {
		if equalWords(words[i:i+len(phrase)], phrase) {
			return i
		}
	}
	return -1
}

func equalWords(a, b []string) bool {
	for i := range b {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func containsString(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// Entity is one named entity of an NER answer.
type Entity struct {
	Text, Type string
}

// ParseEntities reads an NER answer written as one "entity text, TYPE" line
// per entity, or "None". Lines that do not have that form are ignored, so a
// rambling prediction only scores on the lines it got right.
func ParseEntities(s string) []Entity {
	var out []Entity
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		i := strings.LastIndexByte(line, ',')
		if i <= 0 {
			continue
		}
		text := strings.Join(strings.Fields(line[:i]), " ")
		typ := strings.ToUpper(strings.TrimSpace(line[i+1:]))
		if text == "" || typ == "" || strings.ContainsAny(typ, " \t") {
			continue
		}
		out = append(out, Entity{Text: strings.ToLower(text), Type: typ})
	}
	return out
}

// entityAcc is micro-averaged entity F1: true positives are matched as a
// multiset of (text, type) pairs per sample, summed over the suite.
type entityAcc struct {
	tp, fp, fn, n int
}

func (a *entityAcc) Add(pred, gold string) {
	tp, fp, fn := EntityCounts(ParseEntities(pred), ParseEntities(gold))
	a.tp += tp
	a.fp += fp
	a.fn += fn
	a.n++
}
func (a *entityAcc) N() int { return a.n }
func (a *entityAcc) Value() float64 {
	if a.tp+a.fp+a.fn == 0 {
		// Every gold and prediction was "None": nothing to miss, nothing wrong.
		if a.n > 0 {
			return 1
		}
		return 0
	}
	return 2 * float64(a.tp) / float64(2*a.tp+a.fp+a.fn)
}

// EntityCounts matches predicted against gold entities as multisets and
// returns true positives, false positives and false negatives.
func EntityCounts(pred, gold []Entity) (tp, fp, fn int) {
	left := make(map[Entity]int, len(gold))
	for _, g := range gold {
		left[g]++
	}
	for _, p := range pred {
		if left[p] > 0 {
			left[p]--
			tp++
		} else {
			fp++
		}
	}
	return tp, fp, len(gold) - tp
}

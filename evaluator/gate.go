package evaluator

import (
	"fmt"
	"math"
	"strings"
)

// Scores maps a score key to its value. Task scores are in points (0–100,
// higher is better); keys that start with "loss" are held-out losses in nats
// per token (lower is better). Keys: "<group>" for a task group's mean
// ("seen", "unseen", "general"), "loss/<group>" for a loss group's mean,
// "<suite>/<metric>" for one suite.
type Scores map[string]float64

// LowerIsBetter reports whether smaller values of the score key are better.
func LowerIsBetter(key string) bool {
	return key == MetricLoss || strings.HasPrefix(key, "loss/") || strings.HasSuffix(key, "/loss")
}

// Rule kinds.
const (
	// RuleMinGain requires the candidate to beat the reference by at least Value.
	RuleMinGain = "min_gain"
	// RuleMaxRegression allows the candidate to be worse than the reference by at most Value.
	RuleMaxRegression = "max_regression"
)

// References a rule compares against.
const (
	AgainstBaseline = "baseline" // the base model's scores
	AgainstLast     = "last"     // the last published checkpoint (baseline if none)
)

// Rule is one declarative gate condition.
type Rule struct {
	// Score is the key in Scores, e.g. "seen" or "loss/general".
	Score string `mapstructure:"score" json:"score" yaml:"score"`
	// Kind is RuleMinGain or RuleMaxRegression.
	Kind string `mapstructure:"kind" json:"kind" yaml:"kind"`
	// Against is AgainstBaseline or AgainstLast.
	Against string `mapstructure:"against" json:"against" yaml:"against"`
	// Value is the gain or regression, in the score's unit, or a fraction of
	// the reference when Relative.
	Value float64 `mapstructure:"value" json:"value" yaml:"value"`
	// Relative makes Value a fraction of the reference (0.02 = 2%).
	Relative bool `mapstructure:"relative" json:"relative" yaml:"relative"`
}

// Validate checks the rule's fields.
func (r Rule) Validate() error {
	if r.Score == "" {
		return fmt.Errorf("gate rule: score is empty")
	}
	if r.Kind != RuleMinGain && r.Kind != RuleMaxRegression {
		return fmt.Errorf("gate rule on %q: kind %q (want %s or %s)", r.Score, r.Kind, RuleMinGain, RuleMaxRegression)
	}
	if r.Against != AgainstBaseline && r.Against != AgainstLast {
		return fmt.Errorf("gate rule on %q: against %q (want %s or %s)", r.Score, r.Against, AgainstBaseline, AgainstLast)
	}
	if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) || r.Value < 0 {
		return fmt.Errorf("gate rule on %q: value %v (want a finite number ≥ 0)", r.Score, r.Value)
	}
	return nil
}

// String renders the rule as a readable condition.
func (r Rule) String() string {
	unit := ""
	if r.Relative {
		unit = " (relative)"
	}
	return fmt.Sprintf("%s %s %g%s vs %s", r.Score, r.Kind, r.Value, unit, r.Against)
}

// RuleResult is the outcome of one rule.
type RuleResult struct {
	Rule      Rule    `json:"rule"`
	Candidate float64 `json:"candidate"`
	Reference float64 `json:"reference"`
	// Threshold is the bound the candidate had to meet.
	Threshold float64 `json:"threshold"`
	// ReferenceFrom says which checkpoint the reference came from.
	ReferenceFrom string `json:"reference_from"`
	Pass          bool   `json:"pass"`
	Reason        string `json:"reason"`
}

// Decision is the gate's verdict on a candidate.
type Decision struct {
	Pass  bool         `json:"pass"`
	Rules []RuleResult `json:"rules"`
}

// Reasons lists the reasons of the failed rules (all rules when it passed).
func (d Decision) Reasons() []string {
	var out []string
	for _, r := range d.Rules {
		if !r.Pass || d.Pass {
			out = append(out, r.Reason)
		}
	}
	return out
}

// Gate decides whether a candidate may be published.
type Gate struct {
	Rules []Rule
}

// NewGate validates rules and returns a gate. A gate with no rules refuses
// every candidate: publishing must be asked for explicitly.
func NewGate(rules []Rule) (*Gate, error) {
	for i, r := range rules {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("gate rule %d: %w", i, err)
		}
	}
	return &Gate{Rules: append([]Rule(nil), rules...)}, nil
}

// Decide applies every rule to candidate. last is nil when nothing has been
// published yet; rules against "last" then compare with the baseline.
func (g *Gate) Decide(candidate, baseline, last Scores) Decision {
	d := Decision{Pass: len(g.Rules) > 0}
	for _, r := range g.Rules {
		res := evalRule(r, candidate, baseline, last)
		d.Pass = d.Pass && res.Pass
		d.Rules = append(d.Rules, res)
	}
	return d
}

func evalRule(r Rule, candidate, baseline, last Scores) RuleResult {
	res := RuleResult{Rule: r, ReferenceFrom: r.Against}
	ref := baseline
	if r.Against == AgainstLast {
		if last != nil {
			ref = last
		} else {
			res.ReferenceFrom = AgainstBaseline + " (nothing published yet)"
		}
	}
	c, okC := candidate[r.Score]
	b, okR := ref[r.Score]
	res.Candidate, res.Reference = c, b
	switch {
	case !okC:
		res.Reason = fmt.Sprintf("%s: candidate has no score %q", r, r.Score)
		return res
	case !okR:
		res.Reason = fmt.Sprintf("%s: %s has no score %q", r, res.ReferenceFrom, r.Score)
		return res
	case math.IsNaN(c):
		res.Reason = fmt.Sprintf("%s: candidate score is NaN", r)
		return res
	}
	delta := r.Value
	if r.Relative {
		delta = r.Value * math.Abs(b)
	}
	lower := LowerIsBetter(r.Score)
	// A gain moves the threshold past the reference in the good direction;
	// a regression allowance moves it back in the bad direction.
	sign := 1.0
	if r.Kind == RuleMaxRegression {
		sign = -1
	}
	if lower {
		res.Threshold = b - sign*delta
		res.Pass = c <= res.Threshold
	} else {
		res.Threshold = b + sign*delta
		res.Pass = c >= res.Threshold
	}
	cmp := "≥"
	if lower {
		cmp = "≤"
	}
	verdict := "pass"
	if !res.Pass {
		verdict = "FAIL"
	}
	res.Reason = fmt.Sprintf("%s: %s %.4f %s %.4f (%s %.4f): %s", r, r.Score, c, cmp, res.Threshold, res.ReferenceFrom, b, verdict)
	return res
}

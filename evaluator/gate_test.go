package evaluator

import (
	"math"
	"testing"
)

func TestGateDecide(t *testing.T) {
	baseline := Scores{"seen": 40, "general": 60, "loss/general": 3.0, "loss/domain": 4.0}
	last := Scores{"seen": 50, "general": 61, "loss/general": 3.02, "loss/domain": 3.5}
	cases := []struct {
		name      string
		rule      Rule
		candidate Scores
		last      Scores
		pass      bool
		threshold float64
	}{
		{"seen gains over last", Rule{Score: "seen", Kind: RuleMinGain, Against: AgainstLast, Value: 0.5}, Scores{"seen": 50.5}, last, true, 50.5},
		{"seen gain too small", Rule{Score: "seen", Kind: RuleMinGain, Against: AgainstLast, Value: 0.5}, Scores{"seen": 50.4}, last, false, 50.5},
		{"last falls back to baseline", Rule{Score: "seen", Kind: RuleMinGain, Against: AgainstLast, Value: 0.5}, Scores{"seen": 41}, nil, true, 40.5},
		{"general loss within 2%", Rule{Score: "loss/general", Kind: RuleMaxRegression, Against: AgainstBaseline, Value: 0.02, Relative: true}, Scores{"loss/general": 3.06}, last, true, 3.06},
		{"general loss beyond 2%", Rule{Score: "loss/general", Kind: RuleMaxRegression, Against: AgainstBaseline, Value: 0.02, Relative: true}, Scores{"loss/general": 3.07}, last, false, 3.06},
		{"domain loss must drop", Rule{Score: "loss/domain", Kind: RuleMinGain, Against: AgainstBaseline, Value: 0.1}, Scores{"loss/domain": 3.95}, last, false, 3.9},
		{"general accuracy regression allowed", Rule{Score: "general", Kind: RuleMaxRegression, Against: AgainstBaseline, Value: 1}, Scores{"general": 59}, last, true, 59},
		{"missing score fails", Rule{Score: "unseen", Kind: RuleMinGain, Against: AgainstBaseline, Value: 0}, Scores{"seen": 99}, last, false, 0},
		{"NaN fails", Rule{Score: "seen", Kind: RuleMaxRegression, Against: AgainstBaseline, Value: 100}, Scores{"seen": math.NaN()}, last, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, err := NewGate([]Rule{c.rule})
			if err != nil {
				t.Fatal(err)
			}
			d := g.Decide(c.candidate, baseline, c.last)
			if d.Pass != c.pass {
				t.Fatalf("pass=%v, want %v: %v", d.Pass, c.pass, d.Reasons())
			}
			if c.threshold != 0 && math.Abs(d.Rules[0].Threshold-c.threshold) > 1e-9 {
				t.Fatalf("threshold %v, want %v", d.Rules[0].Threshold, c.threshold)
			}
			if d.Rules[0].Reason == "" {
				t.Fatal("no reason recorded")
			}
		})
	}
}

func TestGateAllRulesMustPass(t *testing.T) {
	g, err := NewGate([]Rule{
		{Score: "seen", Kind: RuleMinGain, Against: AgainstBaseline, Value: 1},
		{Score: "loss/general", Kind: RuleMaxRegression, Against: AgainstBaseline, Value: 0.01, Relative: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	base := Scores{"seen": 10, "loss/general": 2}
	if d := g.Decide(Scores{"seen": 20, "loss/general": 2.5}, base, nil); d.Pass || len(d.Reasons()) != 1 {
		t.Fatalf("general regression passed or reasons wrong: %+v", d)
	}
	if d := g.Decide(Scores{"seen": 20, "loss/general": 2.01}, base, nil); !d.Pass {
		t.Fatalf("good candidate refused: %v", d.Reasons())
	}
}

func TestGateWithoutRulesRefuses(t *testing.T) {
	g, _ := NewGate(nil)
	if g.Decide(Scores{"seen": 1}, Scores{}, nil).Pass {
		t.Fatal("empty gate passed")
	}
}

func TestRuleValidate(t *testing.T) {
	bad := []Rule{
		{Kind: RuleMinGain, Against: AgainstBaseline},
		{Score: "seen", Kind: "gain", Against: AgainstBaseline},
		{Score: "seen", Kind: RuleMinGain, Against: "yesterday"},
		{Score: "seen", Kind: RuleMinGain, Against: AgainstBaseline, Value: -1},
		{Score: "seen", Kind: RuleMinGain, Against: AgainstBaseline, Value: math.Inf(1)},
	}
	for i, r := range bad {
		if _, err := NewGate([]Rule{r}); err == nil {
			t.Errorf("rule %d accepted: %+v", i, r)
		}
	}
}

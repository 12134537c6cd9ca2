package evaluator

import (
	"math"
	"testing"
)

func TestNormalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"The Answer!", "answer"},
		{"  Positive.  ", "positive"},
		{"an apple, a pear", "apple pear"},
		{"EUR 5.5 mln", "eur 5 5 mln"},
		{"", ""},
	}
	for _, c := range cases {
		if got := Normalize(c.in); got != c.want {
			t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestROUGE1F1(t *testing.T) {
	cases := []struct {
		pred, ref string
		want      float64
	}{
		{"the cat sat", "the cat sat", 1},
		{"cat", "cat sat", 2 * 1 * 0.5 / 1.5},
		{"dog", "cat", 0},
		{"", "", 1},
		{"", "cat", 0},
		// Repeated words only match as often as the reference has them.
		{"cat cat cat", "cat", 2 * (1.0 / 3) * 1 / (1.0/3 + 1)},
	}
	for _, c := range cases {
		if got := ROUGE1F1(c.pred, c.ref); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("ROUGE1F1(%q, %q) = %v, want %v", c.pred, c.ref, got, c.want)
		}
	}
}

func TestPredictLabel(t *testing.T) {
	labels := []string{"negative", "neutral", "positive"}
	cases := []struct{ pred, want string }{
		{"Positive", "positive"},
		{"positive, because profits rose; not negative", "positive"},
		{"The sentiment is neutral.", "neutral"},
		{"I cannot tell", ""},
		{"positively", ""},
	}
	for _, c := range cases {
		if got := PredictLabel(c.pred, labels); got != c.want {
			t.Errorf("PredictLabel(%q) = %q, want %q", c.pred, got, c.want)
		}
	}
	// At the same position the longer label wins.
	if got := PredictLabel("no opinion here", []string{"no", "no opinion"}); got != "no opinion" {
		t.Errorf("tie: got %q", got)
	}
}

func TestLabelAccumulatorCollectsLabelsFromGold(t *testing.T) {
	acc, err := NewAccumulator(MetricLabel, nil)
	if err != nil {
		t.Fatal(err)
	}
	acc.Add("yes", "yes")
	acc.Add("No.", "no")
	acc.Add("maybe", "yes")
	acc.Add("yes", "no")
	if got, want := acc.Value(), 0.5; got != want {
		t.Fatalf("accuracy %v, want %v", got, want)
	}
}

func TestParseEntities(t *testing.T) {
	got := ParseEntities("Silicium de Provence SAS, ORG\nrandom text\n  Borrower ,  per\nNone")
	want := []Entity{{"silicium de provence sas", "ORG"}, {"borrower", "PER"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entity %d: got %v, want %v", i, got[i], want[i])
		}
	}
	if e := ParseEntities("None"); len(e) != 0 {
		t.Errorf("None parsed as %v", e)
	}
}

func TestEntityF1(t *testing.T) {
	cases := []struct {
		name  string
		pairs [][2]string
		want  float64
	}{
		{"perfect", [][2]string{{"Bank, ORG", "Bank, ORG"}}, 1},
		{"all none", [][2]string{{"None", "None"}}, 1},
		{"wrong type", [][2]string{{"Bank, PER", "Bank, ORG"}}, 0},
		// tp=1 fp=1 fn=1 -> 2/(2+1+1)
		{"half", [][2]string{{"Bank, ORG\nLender, ORG", "Bank, ORG\nLender, PER"}}, 0.5},
		// micro average across samples: tp=1, fn=1 -> 2/3
		{"micro", [][2]string{{"Bank, ORG", "Bank, ORG"}, {"None", "Borrower, PER"}}, 2.0 / 3},
		// duplicates count once each
		{"multiset", [][2]string{{"Bank, ORG\nBank, ORG", "Bank, ORG"}}, 2.0 / 3},
	}
	for _, c := range cases {
		acc, _ := NewAccumulator(MetricEntityF1, nil)
		for _, p := range c.pairs {
			acc.Add(p[0], p[1])
		}
		if got := acc.Value(); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: F1 %v, want %v", c.name, got, c.want)
		}
	}
}

func TestUnknownMetric(t *testing.T) {
	if _, err := NewAccumulator("bleu", nil); err == nil {
		t.Fatal("unknown metric accepted")
	}
}

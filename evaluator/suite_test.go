package evaluator

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"replayd/model"
	"replayd/tokenizer"
)

// tinySetup trains a small tokenizer and makes a tiny random model.
func tinySetup(t *testing.T) (*model.Model, *tokenizer.Tokenizer, *tokenizer.ChatTemplate, string) {
	t.Helper()
	dir := t.TempDir()
	var corpus strings.Builder
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&corpus, "{\"text\": \"Company %d said profit rose %d pct to %d mln dlrs in the quarter.\"}\n", i%17, i%40, i)
	}
	train := filepath.Join(dir, "train.jsonl")
	if err := os.WriteFile(train, []byte(corpus.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Train(context.Background(), tokenizer.TrainOptions{VocabSize: 320}, train)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := tok.ChatTemplate()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := model.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cfg.VocabSize = 320
	eos, _ := tok.TokenID("<|end_of_text|>")
	cfg.EOSTokenID = int(eos)
	m, err := model.New(cfg, model.NewCPUBackend(1), 3)
	if err != nil {
		t.Fatal(err)
	}
	return m, tok, tmpl, dir
}

// The adapter's NLL must equal −log softmax of the model's own logits at the
// masked targets, computed here independently in float64.
func TestModelAdapterNLLMatchesLogits(t *testing.T) {
	m, _, tmpl, _ := tinySetup(t)
	toks, mask := tmpl.EncodeDAPT("Company 3 said profit rose 7 pct.")
	mask[3] = 0 // a masked target must not count
	sum, n, err := ModelAdapter{M: m}.NLL(context.Background(), toks, mask)
	if err != nil {
		t.Fatal(err)
	}
	T := len(toks) - 1
	logits, _, err := m.Logits(context.Background(), model.SingleDocBatch(1, T, toks[:T]))
	if err != nil {
		t.Fatal(err)
	}
	V := m.Config.VocabSize
	var want float64
	count := 0
	for i := 0; i < T; i++ {
		if mask[i+1] == 0 {
			continue
		}
		row := logits[i*V : (i+1)*V]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v) - mx)
		}
		want += mx + math.Log(z) - float64(row[toks[i+1]])
		count++
	}
	if n != count || math.Abs(sum-want) > 1e-4*math.Abs(want) {
		t.Fatalf("NLL sum %v over %d, want %v over %d", sum, n, want, count)
	}
}

func TestEvaluatorRunSuites(t *testing.T) {
	m, tok, tmpl, dir := tinySetup(t)
	loss := filepath.Join(dir, "val.jsonl")
	os.WriteFile(loss, []byte("{\"text\": \"Company 5 said profit rose 3 pct.\"}\n{\"text\": \"Company 9 said profit fell.\"}\n"), 0o644)
	task := filepath.Join(dir, "task.jsonl")
	os.WriteFile(task, []byte(`{"instruction": "Sentiment?", "input": "profit rose", "output": "positive"}
{"instruction": "Sentiment?", "input": "profit fell", "output": "negative"}
{"instruction": "Sentiment?", "input": "profit flat", "output": "neutral"}
`), 0o644)
	suites := []SuiteConfig{
		{Name: "val", Group: "domain", Kind: KindLoss, File: loss},
		{Name: "sent", Group: "seen", Kind: KindTask, Metric: MetricLabel, File: task, MaxNewTokens: 3, Template: TemplateBoth},
	}
	for _, s := range suites {
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	ev := &Evaluator{Suites: suites, Workers: 2}
	rep, err := ev.Run(context.Background(), ModelAdapter{M: m}, ChatCodec{ChatTemplate: tmpl, Tok: tok})
	if err != nil {
		t.Fatal(err)
	}
	// The loss suite is the token-weighted mean of the documents' NLL.
	var sum float64
	var n int
	for _, text := range []string{"Company 5 said profit rose 3 pct.", "Company 9 said profit fell."} {
		toks, mask := tmpl.EncodeDAPT(text)
		s, c, _ := ModelAdapter{M: m}.NLL(context.Background(), toks, mask)
		sum, n = sum+s, n+c
	}
	if got := rep.Scores["val/loss"]; math.Abs(got-sum/float64(n)) > 1e-9 || rep.Scores["loss/domain"] != got {
		t.Fatalf("val/loss %v, loss/domain %v, want %v", got, rep.Scores["loss/domain"], sum/float64(n))
	}
	for _, k := range []string{"sent/label", "sent/label@plain", "seen"} {
		v, ok := rep.Scores[k]
		if !ok || v < 0 || v > 100 {
			t.Fatalf("score %s = %v (%v)", k, v, ok)
		}
	}
	if rep.Scores["seen"] != rep.Scores["sent/label"] {
		t.Fatal("the group score must use the chat-template variant")
	}
	if tab := rep.Table(); !strings.Contains(tab, "sent") || !strings.Contains(tab, "loss/domain") {
		t.Fatalf("table:\n%s", tab)
	}
}

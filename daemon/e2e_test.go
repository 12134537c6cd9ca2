package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"replayd/evaluator"
	"replayd/ingest"
	"replayd/model"
	"replayd/ops"
	"replayd/tokenizer"
)

const sharedData = "../../shared/data"

// subsetData copies the first lines of each shared data file into a temporary
// directory of the same layout.
func subsetData(t *testing.T, lines map[string]int) string {
	t.Helper()
	if _, err := os.Stat(sharedData); err != nil {
		t.Skipf("shared data not found at %s", sharedData)
	}
	dir := t.TempDir()
	for name, n := range lines {
		in, err := os.Open(filepath.Join(sharedData, name))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		var b strings.Builder
		for i := 0; i < n && sc.Scan(); i++ {
			b.Write(sc.Bytes())
			b.WriteByte('\n')
		}
		in.Close()
		out := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var e2eLines = map[string]int{
	"finance_raw/reuters21578_train.jsonl":  60,
	"finance_raw/reuters21578_val.jsonl":    8,
	"finance_sft/fpb_sentiment_train.jsonl": 150,
	"finance_sft/fpb_sentiment_test.jsonl":  16,
	"general_raw/wikipedia_en_train.jsonl":  12,
	"general_raw/wikipedia_en_val.jsonl":    4,
	"general_sft/dolly_5k.jsonl":            100,
	"general_eval/boolq_dev.jsonl":          8,
}

// baseCheckpoint trains a tokenizer on the data and writes a fresh tiny
// model with it: the base the daemon post-trains.
func baseCheckpoint(t *testing.T, ds DataSet) string {
	t.Helper()
	var files []string
	for _, fs := range ds.Train {
		files = append(files, fs...)
	}
	tok, err := tokenizer.Train(context.Background(), tokenizer.TrainOptions{VocabSize: 512}, files...)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ops.DefaultConfig()
	mc, err := scratchConfig(cfg, tok)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(mc, model.NewCPUBackend(2), 7)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "base")
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := tok.Save(filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func testConfig(t *testing.T, base string, ds DataSet) ops.Config {
	cfg := ops.DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "run")
	cfg.HTTP.Addr = ""
	cfg.Model.Base = base
	cfg.Train.SeqLen, cfg.Train.BatchSize, cfg.Train.LR, cfg.Train.WarmupSteps = 128, 4, 3e-3, 2
	cfg.Train.CheckpointEvery = 5
	cfg.Eval.EverySteps = 8
	cfg.Eval.Suites = ds.Suites
	for i := range cfg.Eval.Suites {
		cfg.Eval.Suites[i].MaxSamples = min(cfg.Eval.Suites[i].MaxSamples, 8)
	}
	return cfg
}

func quietLog() (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelWarn)
	return slog.New(slog.NewTextHandler(io.Discard, nil)), lv
}

// probeLogits computes the logits of a fixed prompt.
func probeLogits(t *testing.T, m *model.Model) []float32 {
	t.Helper()
	tokens := make([]int32, 16)
	for i := range tokens {
		tokens[i] = int32(3 + i*7%200)
	}
	b := model.SingleDocBatch(1, len(tokens), tokens)
	logits, _, err := m.Logits(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return logits
}

func TestEndToEndGatePublishesAndRefuses(t *testing.T) {
	data := subsetData(t, e2eLines)
	ds, err := ScanData(data, "fin", "gen")
	if err != nil {
		t.Fatal(err)
	}
	base := baseCheckpoint(t, ds)
	cases := []struct {
		name    string
		rules   []evaluator.Rule
		publish bool
	}{
		{"passing rules", []evaluator.Rule{
			{Score: "loss/domain", Kind: evaluator.RuleMinGain, Against: evaluator.AgainstLast, Value: 0.01, Relative: true},
			{Score: "loss/general", Kind: evaluator.RuleMaxRegression, Against: evaluator.AgainstBaseline, Value: 0.5, Relative: true},
		}, true},
		{"impossible rules", []evaluator.Rule{
			{Score: "seen", Kind: evaluator.RuleMinGain, Against: evaluator.AgainstBaseline, Value: 1000},
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, base, ds)
			cfg.Gate.Rules = c.rules
			cfg.Train.MaxSteps = 24
			var mu sync.Mutex
			var evals []ops.EvalPoint
			published := map[string][]float32{}
			log, lv := quietLog()
			err := Run(context.Background(), cfg, RunOptions{
				SeedData:  SeedFromData(ds, 0, nil),
				OnEval:    func(p ops.EvalPoint) { mu.Lock(); evals = append(evals, p); mu.Unlock() },
				OnPublish: func(v string, m *model.Model) { mu.Lock(); published[v] = probeLogits(t, m); mu.Unlock() },
			}, log, lv)
			if err != nil {
				t.Fatal(err)
			}
			// Evaluations that would overlap a running one are skipped, so
			// a slow machine may see fewer than max_steps/every_steps.
			if len(evals) < 2 || !evals[0].Baseline {
				t.Fatalf("want a baseline and at least one evaluation, got %+v", evals)
			}
			for _, e := range evals[1:] {
				if !c.publish && (e.Pass || len(e.Reasons) == 0 || !strings.Contains(strings.Join(e.Reasons, " "), "seen")) {
					t.Fatalf("impossible gate: pass=%v reasons=%v", e.Pass, e.Reasons)
				}
			}
			local := evaluator.LocalDir{Root: filepath.Join(cfg.DataDir, "published")}
			versions, err := local.Versions()
			if err != nil {
				t.Fatal(err)
			}
			if !c.publish {
				if len(versions) != 0 || len(published) != 0 {
					t.Fatalf("published %v under a gate that cannot pass", versions)
				}
				return
			}
			if len(published) == 0 || len(versions) != len(published) {
				t.Fatalf("published %d versions, local dir has %v", len(published), versions)
			}
			// Pull the latest back through the registry of the same
			// (restarted) embedded server and compare its logits.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			conn, err := ingest.Connect(ctx, ingest.NATSOptions{Embedded: ingest.EmbeddedOptions{DataDir: filepath.Join(cfg.DataDir, "nats"), NoListen: true}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			reg, err := evaluator.OpenRegistry(ctx, conn.JS, evaluator.RegistryOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "pulled")
			man, err := reg.Pull(ctx, "", out)
			if err != nil {
				t.Fatal(err)
			}
			m, err := model.Load(out, model.NewCPUBackend(1))
			if err != nil {
				t.Fatal(err)
			}
			want := published[man.Version]
			got := probeLogits(t, m)
			if len(want) == 0 || len(got) != len(want) {
				t.Fatalf("version %s: %d logits, want %d", man.Version, len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("logit %d: pulled %v, published snapshot %v", i, got[i], want[i])
				}
			}
			var prov Provenance
			raw, err := os.ReadFile(filepath.Join(out, "replayd.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &prov); err != nil || !prov.Gate.Pass || prov.Step == 0 || len(prov.Policies) == 0 || prov.NextFreshSeq == 0 {
				t.Fatalf("provenance %+v (%v)", prov, err)
			}
		})
	}
}

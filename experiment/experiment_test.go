package experiment

import (
	"context"
	"encoding/csv"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"replayd/ingest"
	"replayd/mixer"
	"replayd/tokenizer"
)

const sharedData = "../../shared/data"

func needData(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(sharedData, "general_sft/dolly_5k.jsonl")); err != nil {
		t.Skipf("shared data not available: %v", err)
	}
}

// TestPaperVariantsLoad checks that every variant and pretrain phase of
// experiments/paper.yaml resolves and that its policy accepts its config,
// so a typo fails here rather than half an hour into `make experiments`.
func TestPaperVariantsLoad(t *testing.T) {
	f, err := LoadFile("../experiments/paper.yaml")
	if err != nil {
		t.Fatal(err)
	}
	q, err := f.ApplyQuick()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	host, err := mixer.NewHost(ctx, mixer.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close(context.WithoutCancel(ctx))
	for _, file := range []*File{f, q} {
		for _, v := range file.Variants {
			phases, err := v.phases(file.Train.Steps)
			if err != nil {
				t.Fatal(err)
			}
			sum := 0
			for _, ph := range phases {
				if _, err := loadPolicy(ctx, host, ph); err != nil {
					t.Errorf("variant %s: %v", v.Name, err)
				}
				sum += ph.steps
			}
			if sum != file.Train.Steps {
				t.Errorf("variant %s: phases have %d steps, budget %d", v.Name, sum, file.Train.Steps)
			}
		}
		for _, ph := range file.Pretrain.Phases {
			blob, err := configJSON(ph.Config)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := loadPolicy(ctx, host, resolvedPhase{policy: ph.Policy, config: blob}); err != nil {
				t.Errorf("pretrain phase %s: %v", ph.Name, err)
			}
		}
	}
}

// miniFile is a miniature grid over the shared data: a tiny model
// pretrained for a few steps, three variants, two seeds, a handful of
// evaluation samples.
func miniFile(dir string) string {
	d := sharedData
	return `
name: mini
base: ` + filepath.Join(dir, "base") + `
out: ` + filepath.Join(dir, "out") + `
threads: 1
seeds: [1, 2]
data:
  dapt_domain: [` + d + `/finance_raw/reuters21578_val.jsonl]
  dapt_general: [` + d + `/general_raw/wikipedia_en_val.jsonl]
  sft_domain: [` + d + `/finance_sft/fpb_sentiment_test.jsonl]
  sft_general: [` + d + `/general_sft/lima_1k.jsonl]
  max_samples: 60
  max_tokens: 160
  holdout: {file: ` + d + `/general_sft/lima_1k.jsonl, n: 5, generate: true, max_new_tokens: 4}
pretrain:
  vocab: 300
  seed: 3
  model: {preset: tiny, max_position_embeddings: 64}
  train: {batch: 2, seq_len: 64, lr: 1.0e-3, warmup: 1}
  phases:
    - {name: raw, policy: joint-replay, steps: 3, config: {general_fresh: true, mix: [0, 0, 1, 0, 0, 0, 0, 0]}}
    - {name: sft, policy: joint-replay, steps: 2, config: {general_fresh: true, mix: [0, 0, 0, 0, 0, 0, 1, 0]}}
train: {batch: 2, seq_len: 64, steps: 4, lr: 1.0e-3, min_lr: 1.0e-4, warmup: 1}
eval:
  max_samples: 3
  suites:
    - {name: wiki, group: general, kind: loss, file: ` + d + `/general_raw/wikipedia_en_val.jsonl, max_tokens: 64}
    - {name: fpb, group: seen, kind: task, metric: label, labels: [negative, neutral, positive], file: ` + d + `/finance_sft/fpb_sentiment_test.jsonl, max_new_tokens: 2, max_tokens: 48}
variants:
  - {name: sft-nomask, policy: sft-only, sft_mask: false}
  - {name: seq, policy: sequential, switch_fraction: 0.5}
  - name: gen-then-sft
    phases:
      - {policy: joint-replay, fraction: 0.5, config: {general_fresh: true, mix: [0, 0, 1, 0, 0, 0, 0, 0]}}
      - {policy: sft-only, fraction: 0.5}
`
}

// TestMiniGrid runs a miniature grid end to end (pretrain included) and
// checks the table and the CSV: every variant present with finite numbers.
func TestMiniGrid(t *testing.T) {
	needData(t)
	dir := t.TempDir()
	f, err := Parse([]byte(miniFile(dir)))
	if err != nil {
		t.Fatal(err)
	}
	runs, err := Run(t.Context(), f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + len(f.Variants)*len(f.Seeds); len(runs) != want {
		t.Fatalf("%d runs, want %d", len(runs), want)
	}
	for _, name := range []string{"model.safetensors", "config.json", "tokenizer.json"} {
		if _, err := os.Stat(filepath.Join(f.Base, name)); err != nil {
			t.Errorf("base: %v", err)
		}
	}
	md, err := os.ReadFile(filepath.Join(f.Out, "table.md"))
	if err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(filepath.Join(f.Out, "results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	recs, err := csv.NewReader(fh).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	head := recs[0]
	rows := map[string][]string{}
	for _, r := range recs[1:] {
		rows[r[0]] = r
	}
	wantKeys := []string{"wiki/loss", "fpb/label", "general_sft_heldout/answer_loss", "general_sft_heldout/rouge1"}
	for _, v := range append([]string{BaseRow}, "sft-nomask", "seq", "gen-then-sft") {
		if !strings.Contains(string(md), "| "+v+" |") {
			t.Errorf("table.md has no row %s:\n%s", v, md)
		}
		r, ok := rows[v]
		if !ok {
			t.Errorf("results.csv has no row %s", v)
			continue
		}
		for _, k := range wantKeys {
			i := indexOf(head, k+"_mean")
			if i < 0 {
				t.Fatalf("results.csv has no column %s_mean: %v", k, head)
			}
			x, err := strconv.ParseFloat(r[i], 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
				t.Errorf("%s %s = %q: not a finite number", v, k, r[i])
			}
		}
		if v != BaseRow && r[2] != "2" {
			t.Errorf("%s: seeds %s, want 2", v, r[2])
		}
	}
	if _, err := os.Stat(filepath.Join(f.Out, plotName("wiki/loss"))); err != nil {
		t.Errorf("plot: %v", err)
	}
}

func indexOf(xs []string, s string) int {
	for i, x := range xs {
		if x == s {
			return i
		}
	}
	return -1
}

// TestSFTMask checks that sft_mask: false really moves loss onto the
// instruction tokens: in the stream and in the packed batches the trainer
// sees, while DAPT samples are untouched.
func TestSFTMask(t *testing.T) {
	needData(t)
	f, err := Parse([]byte(miniFile(t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	if err := Pretrain(t.Context(), f, nil); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(filepath.Join(f.Base, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := tok.ChatTemplate()
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadCorpus(t.Context(), f.Data, ct, 160)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		mask    bool
		sftZero bool // SFT samples keep zeros (instruction tokens) in their mask
	}{
		{"masked", true, true},
		{"unmasked", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, samples := stream(c, 1, tc.mask)
			var sft, dapt int
			for _, s := range samples {
				zeros := 0
				for _, m := range s.LossMask[1:] {
					if m == 0 {
						zeros++
					}
				}
				switch s.Kind {
				case ingest.KindSFT:
					sft++
					if (zeros > 0) != tc.sftZero {
						t.Fatalf("SFT sample %s: %d masked targets, want masked=%v", s.ID, zeros, tc.sftZero)
					}
				case ingest.KindDAPT:
					dapt++
					if zeros != 0 {
						t.Fatalf("DAPT sample %s has %d masked targets", s.ID, zeros)
					}
				}
			}
			if sft == 0 || dapt == 0 {
				t.Fatalf("stream has %d SFT and %d DAPT samples", sft, dapt)
			}
			// The batches of an SFT-only run: weighted targets per position.
			ctx := t.Context()
			host, err := mixer.NewHost(ctx, mixer.HostConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer host.Close(context.WithoutCancel(ctx))
			log, samples := stream(c, 1, tc.mask)
			pol, err := loadPolicy(ctx, host, resolvedPhase{policy: "sft-only"})
			if err != nil {
				t.Fatal(err)
			}
			mx, err := mixer.New(mixer.Config{B: 4, T: 64, Seed: 1}, log, pol)
			if err != nil {
				t.Fatal(err)
			}
			if err := mx.Add(samples); err != nil {
				t.Fatal(err)
			}
			b, err := nextBatch(ctx, mx)
			if err != nil {
				t.Fatal(err)
			}
			var targets, weighted int
			for i, w := range b.Weights {
				if b.Targets[i] >= 0 {
					targets++
					if w > 0 {
						weighted++
					}
				}
			}
			if tc.mask && weighted >= targets/2 {
				t.Errorf("masked SFT batch: %d of %d targets carry loss, want the instructions masked", weighted, targets)
			}
			if !tc.mask && weighted != targets {
				t.Errorf("unmasked SFT batch: %d of %d targets carry loss, want all", weighted, targets)
			}
		})
	}
}

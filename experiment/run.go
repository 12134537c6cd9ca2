package experiment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"replayd/evaluator"
	"replayd/model"
	"replayd/tokenizer"
)

// BaseRow is the variant name of the base checkpoint's evaluation row.
const BaseRow = "base"

// RunResult is one (variant, seed) run.
type RunResult struct {
	Variant     string           `json:"variant"`
	Seed        uint64           `json:"seed"`
	Train       TrainStats       `json:"train"`
	Scores      evaluator.Scores `json:"scores"`
	EvalSeconds float64          `json:"eval_seconds"`
}

// Options are the run-time settings of Run.
type Options struct {
	// Progress receives log lines (nil: discarded).
	Progress io.Writer
	// Command is recorded in the outputs (how the results were made).
	Command string
}

func (f *File) threads() int {
	if f.Threads > 0 {
		return f.Threads
	}
	return runtime.GOMAXPROCS(0)
}

// Run executes the experiment: pretrain the base if it is missing, then
// every variant × seed from the base, evaluating each, and writes the
// results into f.Out. It returns every run, the base first.
func Run(ctx context.Context, f *File, opt Options) ([]RunResult, error) {
	progress := opt.Progress
	if progress == nil {
		progress = io.Discard
	}
	if _, err := os.Stat(filepath.Join(f.Base, "model.safetensors")); errors.Is(err, os.ErrNotExist) {
		if f.Pretrain == nil {
			return nil, fmt.Errorf("experiment: base %s does not exist and the file has no pretrain section", f.Base)
		}
		fmt.Fprintf(progress, "base %s missing: pretraining it\n", f.Base)
		if err := Pretrain(ctx, f, progress); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("experiment: base: %w", err)
	}
	tok, err := tokenizer.Load(filepath.Join(f.Base, "tokenizer.json"))
	if err != nil {
		return nil, fmt.Errorf("experiment: base tokenizer: %w", err)
	}
	ct, err := tok.ChatTemplate()
	if err != nil {
		return nil, fmt.Errorf("experiment: base tokenizer: %w", err)
	}
	base, err := model.Load(f.Base, model.NewCPUBackend(f.threads()))
	if err != nil {
		return nil, fmt.Errorf("experiment: base model: %w", err)
	}
	if f.Train.SeqLen > base.Config.MaxPositionEmbeddings {
		return nil, fmt.Errorf("experiment: train.seq_len %d exceeds the base's %d positions", f.Train.SeqLen, base.Config.MaxPositionEmbeddings)
	}
	if err := os.MkdirAll(f.Out, 0o755); err != nil {
		return nil, fmt.Errorf("experiment: %w", err)
	}
	maxTok := f.Data.MaxTokens
	if maxTok <= 0 {
		maxTok = base.Config.MaxPositionEmbeddings
	}
	t0 := time.Now()
	corpus, err := LoadCorpus(ctx, f.Data, ct, maxTok)
	if err != nil {
		return nil, fmt.Errorf("experiment: %w", err)
	}
	fmt.Fprintf(progress, "corpus: samples %d/%d/%d/%d tokens %d/%d/%d/%d (dapt/domain, dapt/general, sft/domain, sft/general), %d held out, %.1fs\n",
		len(corpus.Buckets[0]), len(corpus.Buckets[1]), len(corpus.Buckets[2]), len(corpus.Buckets[3]),
		corpus.Tokens[0], corpus.Tokens[1], corpus.Tokens[2], corpus.Tokens[3], len(corpus.Holdout), time.Since(t0).Seconds())

	suites, holdName, err := f.suites(corpus)
	if err != nil {
		return nil, err
	}
	holdout := corpus.Holdout
	if f.Eval.MaxSamples > 0 && len(holdout) > f.Eval.MaxSamples {
		holdout = holdout[:f.Eval.MaxSamples]
	}
	runsPath := filepath.Join(f.Out, "runs.jsonl")
	runsFile, err := os.Create(runsPath)
	if err != nil {
		return nil, fmt.Errorf("experiment: %w", err)
	}
	defer runsFile.Close()
	enc := json.NewEncoder(runsFile)
	var results []RunResult
	record := func(r RunResult) error {
		results = append(results, r)
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("experiment: write %s: %w", runsPath, err)
		}
		return nil
	}

	t0 = time.Now()
	bs, err := evaluate(ctx, base, tok, ct, suites, holdout, holdName)
	if err != nil {
		return nil, fmt.Errorf("experiment: base: %w", err)
	}
	fmt.Fprintf(progress, "base evaluated in %.1fs: %s\n", time.Since(t0).Seconds(), summary(bs, f.Eval.Columns))
	if err := record(RunResult{Variant: BaseRow, Scores: bs, EvalSeconds: time.Since(t0).Seconds()}); err != nil {
		return nil, err
	}
	for _, v := range f.Variants {
		phases, err := v.phases(f.Train.Steps)
		if err != nil {
			return nil, err
		}
		for _, seed := range f.Seeds {
			label := fmt.Sprintf("%s/seed%d", v.Name, seed)
			m, err := base.Clone(model.NewCPUBackend(f.threads()))
			if err != nil {
				return nil, fmt.Errorf("experiment: %s: %w", label, err)
			}
			ts, err := trainRun(ctx, m, corpus, runSpec{label: label, phases: phases, sftMask: v.sftMask(), seed: seed, train: f.Train}, progress)
			if err != nil {
				return nil, fmt.Errorf("experiment: %s: %w", label, err)
			}
			t1 := time.Now()
			sc, err := evaluate(ctx, m, tok, ct, suites, holdout, holdName)
			if err != nil {
				return nil, fmt.Errorf("experiment: %s: %w", label, err)
			}
			r := RunResult{Variant: v.Name, Seed: seed, Train: ts, Scores: sc, EvalSeconds: time.Since(t1).Seconds()}
			fmt.Fprintf(progress, "%s: trained %.0fs, evaluated %.0fs: %s\n", label, ts.Seconds, r.EvalSeconds, summary(sc, f.Eval.Columns))
			if err := record(r); err != nil {
				return nil, err
			}
		}
	}
	if err := WriteReport(f, results, opt.Command); err != nil {
		return nil, err
	}
	return results, nil
}

// suites returns the evaluator suites with the eval cap applied, plus a
// ROUGE-1 task suite over the holdout when it asks for generation (its
// lines are written under Out so the evaluator can read them).
func (f *File) suites(c *Corpus) ([]evaluator.SuiteConfig, string, error) {
	var out []evaluator.SuiteConfig
	for _, s := range f.Eval.Suites {
		if f.Eval.MaxSamples > 0 && (s.MaxSamples == 0 || s.MaxSamples > f.Eval.MaxSamples) {
			s.MaxSamples = f.Eval.MaxSamples
		}
		if err := s.Validate(); err != nil {
			return nil, "", fmt.Errorf("experiment: %w", err)
		}
		if (f.Eval.Shuffle == nil || *f.Eval.Shuffle) && s.MaxSamples > 0 {
			path, err := sampleFile(s.File, s.MaxSamples, filepath.Join(f.Out, "eval", s.Name+".jsonl"))
			if err != nil {
				return nil, "", fmt.Errorf("experiment: suite %s: %w", s.Name, err)
			}
			s.File = path
		}
		out = append(out, s)
	}
	h := f.Data.Holdout
	if h == nil {
		return out, "", nil
	}
	name := h.Name
	if name == "" {
		name = "general_sft_heldout"
	}
	if h.Generate {
		path := filepath.Join(f.Out, name+".jsonl")
		var buf []byte
		for _, l := range c.Holdout {
			buf = append(append(buf, l...), '\n')
		}
		if err := os.WriteFile(path, buf, 0o644); err != nil {
			return nil, "", fmt.Errorf("experiment: %w", err)
		}
		maxNew := h.MaxNewTokens
		if maxNew == 0 {
			maxNew = 48
		}
		s := evaluator.SuiteConfig{Name: name, Group: "general", Kind: evaluator.KindTask, File: path,
			Metric: evaluator.MetricROUGE1, MaxSamples: f.Eval.MaxSamples, MaxNewTokens: maxNew, MaxTokens: h.MaxTokens,
			Template: evaluator.TemplateChat}
		out = append(out, s)
	}
	return out, name, nil
}

// Pretrain builds f.Base from scratch: a BPE tokenizer trained on the
// dapt_general files, then a model trained through the pretrain phases on
// the general buckets only (the holdout excluded). It writes into a
// temporary directory renamed into place, so an interrupted pretrain
// never leaves a half-written base.
func Pretrain(ctx context.Context, f *File, progress io.Writer) error {
	p := f.Pretrain
	if p == nil {
		return errors.New("pretrain: the file has no pretrain section")
	}
	if progress == nil {
		progress = io.Discard
	}
	files, err := expand(f.Data.DAPTGeneral)
	if err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	t0 := time.Now()
	tok, err := tokenizer.Train(ctx, tokenizer.TrainOptions{VocabSize: p.Vocab}, files...)
	if err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	ct, err := tok.ChatTemplate()
	if err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	fmt.Fprintf(progress, "pretrain: tokenizer vocab %d in %.1fs\n", tok.VocabSize(), time.Since(t0).Seconds())
	cfg, err := p.Model.config(tok.VocabSize())
	if err != nil {
		return err
	}
	// Point the config's special ids at the trained tokenizer's, so
	// transformers and our generation agree on them.
	for _, sp := range []struct {
		name string
		dst  *int
	}{{tokenizer.BeginOfText, &cfg.BOSTokenID}, {tokenizer.EndOfText, &cfg.EOSTokenID}} {
		id, ok := tok.TokenID(sp.name)
		if !ok {
			return fmt.Errorf("pretrain: tokenizer lacks %s", sp.name)
		}
		*sp.dst = int(id)
	}
	if id, ok := tok.TokenID(tokenizer.Pad); ok {
		pad := int(id)
		cfg.PadTokenID = &pad
	}
	if p.Train.SeqLen > cfg.MaxPositionEmbeddings {
		return fmt.Errorf("pretrain: seq_len %d exceeds max_position_embeddings %d", p.Train.SeqLen, cfg.MaxPositionEmbeddings)
	}
	data := Data{DAPTGeneral: f.Data.DAPTGeneral, SFTGeneral: f.Data.SFTGeneral, MaxTokens: f.Data.MaxTokens, Holdout: f.Data.Holdout}
	if data.MaxTokens <= 0 {
		data.MaxTokens = cfg.MaxPositionEmbeddings
	}
	corpus, err := LoadCorpus(ctx, data, ct, data.MaxTokens)
	if err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	fmt.Fprintf(progress, "pretrain: %d raw documents (%d tokens), %d instructions (%d tokens), %d held out\n",
		len(corpus.Buckets[1]), corpus.Tokens[1], len(corpus.Buckets[3]), corpus.Tokens[3], len(corpus.Holdout))
	m, err := model.New(cfg, model.NewCPUBackend(f.threads()), p.Seed)
	if err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	var phases []resolvedPhase
	for _, ph := range p.Phases {
		blob, err := configJSON(ph.Config)
		if err != nil {
			return fmt.Errorf("pretrain: %w", err)
		}
		name := ph.Name
		if name == "" {
			name = ph.Policy
		}
		phases = append(phases, resolvedPhase{name: "pretrain " + name, policy: ph.Policy, config: blob, steps: ph.Steps})
	}
	st, err := trainRun(ctx, m, corpus, runSpec{label: "pretrain", phases: phases, sftMask: true, seed: p.Seed, train: p.Train}, progress)
	if err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	tmp := f.Base + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	if err := m.Save(tmp); err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	if err := tok.Save(filepath.Join(tmp, "tokenizer.json")); err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	prov, err := json.MarshalIndent(map[string]any{"pretrain": p, "train_stats": st}, "", "  ")
	if err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "pretrain.json"), prov, 0o644); err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	if err := os.RemoveAll(f.Base); err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(f.Base), 0o755); err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	if err := os.Rename(tmp, f.Base); err != nil {
		return fmt.Errorf("pretrain: %w", err)
	}
	fmt.Fprintf(progress, "pretrain: wrote %s (%d steps, %d tokens, final loss %.4f, %.0fs)\n", f.Base, st.Steps, st.Tokens, st.FinalLoss, st.Seconds)
	return nil
}

// sampleFile writes n lines of src, a random subset drawn with a fixed
// seed and kept in file order, to dst and returns dst. With n or fewer
// lines, src itself is returned.
func sampleFile(src string, n int, dst string) (string, error) {
	lines, err := readLines(src)
	if err != nil {
		return "", err
	}
	if len(lines) <= n {
		return src, nil
	}
	r := rand.New(rand.NewPCG(dataSeed, uint64(len(lines))))
	idx := r.Perm(len(lines))[:n]
	sort.Ints(idx)
	var buf []byte
	for _, i := range idx {
		buf = append(append(buf, lines[i]...), '\n')
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(dst, buf, 0o644); err != nil {
		return "", err
	}
	return dst, nil
}

// ReadRuns reads the runs.jsonl that Run writes into f.Out.
func ReadRuns(f *File) ([]RunResult, error) {
	path := filepath.Join(f.Out, "runs.jsonl")
	lines, err := readLines(path)
	if err != nil {
		return nil, fmt.Errorf("experiment: %w", err)
	}
	runs := make([]RunResult, 0, len(lines))
	for i, l := range lines {
		var r RunResult
		if err := json.Unmarshal(l, &r); err != nil {
			return nil, fmt.Errorf("experiment: %s:%d: %w", path, i+1, err)
		}
		runs = append(runs, r)
	}
	return runs, nil
}

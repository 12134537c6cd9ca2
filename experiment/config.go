// Package experiment is replayd's offline research harness: it post-trains
// one base checkpoint under a grid of variants (policy + policy config +
// loss options) on the same token budget and seeds, evaluates each with the
// evaluator's suites, and writes a results table (Markdown and CSV, mean ±
// standard deviation over seeds) and SVG plots. It also builds the base
// model itself (Pretrain): a tokenizer and a small LLaMA trained from
// scratch on general raw text and then general instructions. Nothing needs
// NATS: samples go to a mixer over an in-memory log. See
// experiments/README.md for the YAML schema.
package experiment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"

	"go.yaml.in/yaml/v3"

	"replayd/evaluator"
	"replayd/model"
)

// File is an experiment file (YAML).
type File struct {
	// Name titles the results.
	Name string `yaml:"name"`
	// Base is the checkpoint directory every variant starts from
	// (model.safetensors, config.json, tokenizer.json). When it does not
	// exist and Pretrain is set, Run builds it first.
	Base string `yaml:"base"`
	// Out receives table.md, results.csv, runs.jsonl and the SVG plots.
	Out string `yaml:"out"`
	// Threads is the CPU backend's thread count (0: GOMAXPROCS).
	Threads int `yaml:"threads"`
	// Seeds are the training seeds; every variant runs once per seed.
	Seeds []uint64 `yaml:"seeds"`
	// Data names the training files of the four buckets and the held-out
	// slice of general instructions.
	Data Data `yaml:"data"`
	// Train is the shared post-training budget and optimiser settings.
	Train Train `yaml:"train"`
	// Pretrain builds the base when it is missing (optional).
	Pretrain *PretrainConfig `yaml:"pretrain"`
	// Eval declares the suites.
	Eval Eval `yaml:"eval"`
	// Variants are the grid's rows.
	Variants []Variant `yaml:"variants"`
	// Quick overrides the settings for `experiment --quick` (CI).
	Quick *Quick `yaml:"quick"`
}

// Data names the input files. Globs are allowed.
type Data struct {
	DAPTDomain  []string `yaml:"dapt_domain"`
	DAPTGeneral []string `yaml:"dapt_general"`
	SFTDomain   []string `yaml:"sft_domain"`
	SFTGeneral  []string `yaml:"sft_general"`
	// MaxSamples caps the samples read per bucket (the first ones of its
	// files, in order; 0: all). The budget is far smaller than the data,
	// so reading everything would only cost tokenization time.
	MaxSamples int `yaml:"max_samples"`
	// MaxTokens truncates each tokenized sample (0: the model's length).
	MaxTokens int `yaml:"max_tokens"`
	// Holdout removes the first N lines of File from training (pretrain
	// and post-training alike) and evaluates them as general SFT held out.
	Holdout *Holdout `yaml:"holdout"`
}

// Holdout is a held-out slice of a general SFT file.
type Holdout struct {
	File string `yaml:"file"`
	// N is how many of the file's first lines are held out.
	N int `yaml:"n"`
	// Name is the suite name (default "general_sft_heldout").
	Name string `yaml:"name"`
	// MaxNewTokens caps generated answers for the ROUGE-1 score (0: 48).
	MaxNewTokens int `yaml:"max_new_tokens"`
	// MaxTokens truncates prompts and scored conversations (0: model length).
	MaxTokens int `yaml:"max_tokens"`
	// Generate also scores generated answers with ROUGE-1 (the answer loss
	// is always measured).
	Generate bool `yaml:"generate"`
}

// Train is the optimiser and budget of one run.
type Train struct {
	// Batch and SeqLen are the mixer's batch shape (Batch rows × SeqLen).
	Batch  int `yaml:"batch"`
	SeqLen int `yaml:"seq_len"`
	// Steps is the token budget in optimiser steps: every run trains
	// Steps × Batch × SeqLen packed positions.
	Steps int `yaml:"steps"`
	// LR, MinLR, Warmup: cosine schedule over Steps.
	LR          float64 `yaml:"lr"`
	MinLR       float64 `yaml:"min_lr"`
	Warmup      int     `yaml:"warmup"`
	WeightDecay float64 `yaml:"weight_decay"`
	ClipNorm    float64 `yaml:"clip_norm"`
	// LogEvery prints a progress line every so many steps (0: 50).
	LogEvery int `yaml:"log_every"`
}

// PretrainConfig builds the base "general model" from scratch.
type PretrainConfig struct {
	// Vocab is the BPE vocabulary size (specials included), trained on the
	// dapt_general files.
	Vocab int `yaml:"vocab"`
	// Model is the architecture: a preset name plus overrides.
	Model ModelSpec `yaml:"model"`
	// Seed initialises the weights and the mixer.
	Seed uint64 `yaml:"seed"`
	// Train is the optimiser; its Steps are ignored (phases set them).
	Train Train `yaml:"train"`
	// Phases run in order on one stream, e.g. general raw text, then
	// general instructions.
	Phases []Phase `yaml:"phases"`
}

// ModelSpec is a preset with optional overrides of its sizes.
type ModelSpec struct {
	Preset       string `yaml:"preset"`
	Hidden       int    `yaml:"hidden_size"`
	Layers       int    `yaml:"num_hidden_layers"`
	Heads        int    `yaml:"num_attention_heads"`
	KVHeads      int    `yaml:"num_key_value_heads"`
	Intermediate int    `yaml:"intermediate_size"`
	MaxPositions int    `yaml:"max_position_embeddings"`
}

// Eval declares the evaluation.
type Eval struct {
	// Suites are evaluator suites (the evaluator's SuiteConfig fields).
	Suites []evaluator.SuiteConfig `yaml:"suites"`
	// MaxSamples caps every suite (0: as each suite says).
	MaxSamples int `yaml:"max_samples"`
	// Shuffle evaluates a seeded random subset of max_samples lines of
	// each suite's file instead of its first lines (the evaluator reads
	// the first ones, and shared test files are often sorted by label).
	// Default true.
	Shuffle *bool `yaml:"shuffle"`
	// Columns are the score keys shown in the Markdown table and plotted
	// (default: every group score and every suite score).
	Columns []string `yaml:"columns"`
}

// Variant is one row of the grid: a policy with its config blob and loss
// options, or a list of phases.
type Variant struct {
	Name string `yaml:"name"`
	// Description is shown in the table.
	Description string `yaml:"description"`
	// Policy and Config: a built-in policy and its config blob (any YAML
	// map; passed to the policy's init as JSON).
	Policy string         `yaml:"policy"`
	Config map[string]any `yaml:"config"`
	// SwitchFraction, when set, adds switch_step = round(fraction × steps)
	// to Config, so a sequential policy's switch follows the budget.
	SwitchFraction float64 `yaml:"switch_fraction"`
	// Phases replace Policy/Config: each runs for its fraction of the
	// budget, swapping the policy on the same mixer.
	Phases []Phase `yaml:"phases"`
	// SFTMask false trains on the instruction tokens too: every SFT
	// sample's loss mask becomes all ones (default true, the paper's
	// instruction masking).
	SFTMask *bool `yaml:"sft_mask"`
}

// Phase is a stretch of training under one policy.
type Phase struct {
	Name   string         `yaml:"name"`
	Policy string         `yaml:"policy"`
	Config map[string]any `yaml:"config"`
	// Fraction of the variant's steps (variants), or Steps (pretrain).
	Fraction float64 `yaml:"fraction"`
	Steps    int     `yaml:"steps"`
}

// Quick overrides settings for a fast run that still produces a table.
type Quick struct {
	Base          string   `yaml:"base"`
	Out           string   `yaml:"out"`
	Seeds         []uint64 `yaml:"seeds"`
	Steps         int      `yaml:"steps"`
	Variants      []string `yaml:"variants"`
	EvalSamples   int      `yaml:"eval_samples"`
	DataSamples   int      `yaml:"data_samples"`
	PretrainSteps []int    `yaml:"pretrain_steps"`
}

// LoadFile reads and validates an experiment file. Relative paths are
// taken relative to the current directory (the repository root for
// `make experiments`).
func LoadFile(path string) (*File, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("experiment: %w", err)
	}
	return Parse(raw)
}

// Parse decodes an experiment file and validates it. Unknown keys are
// refused so a typo cannot silently change an experiment.
func Parse(raw []byte) (*File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("experiment: parse: %w", err)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// ApplyQuick returns a copy of f with the Quick overrides applied.
func (f *File) ApplyQuick() (*File, error) {
	if f.Quick == nil {
		return nil, errors.New("experiment: --quick needs a quick: section")
	}
	g := *f
	q := f.Quick
	if q.Base != "" {
		g.Base = q.Base
	}
	if q.Out != "" {
		g.Out = q.Out
	}
	if len(q.Seeds) > 0 {
		g.Seeds = q.Seeds
	}
	if q.Steps > 0 {
		g.Train.Steps = q.Steps
		g.Train.Warmup = min(g.Train.Warmup, q.Steps/5)
	}
	if len(q.Variants) > 0 {
		g.Variants = nil
		for _, name := range q.Variants {
			i := slices.IndexFunc(f.Variants, func(v Variant) bool { return v.Name == name })
			if i < 0 {
				return nil, fmt.Errorf("experiment: quick variant %q is not in variants", name)
			}
			g.Variants = append(g.Variants, f.Variants[i])
		}
	}
	if q.EvalSamples > 0 {
		g.Eval.MaxSamples = q.EvalSamples
	}
	if q.DataSamples > 0 {
		g.Data.MaxSamples = q.DataSamples
	}
	if f.Pretrain != nil && len(q.PretrainSteps) > 0 {
		p := *f.Pretrain
		p.Phases = slices.Clone(p.Phases)
		if len(q.PretrainSteps) != len(p.Phases) {
			return nil, fmt.Errorf("experiment: quick.pretrain_steps has %d entries for %d pretrain phases", len(q.PretrainSteps), len(p.Phases))
		}
		for i := range p.Phases {
			p.Phases[i].Steps = q.PretrainSteps[i]
		}
		p.Train.Warmup = min(p.Train.Warmup, q.PretrainSteps[0]/5)
		g.Pretrain = &p
	}
	g.Quick = nil
	return &g, g.Validate()
}

// Validate checks the file for what would otherwise fail late.
func (f *File) Validate() error {
	if f.Base == "" || f.Out == "" {
		return errors.New("experiment: base and out are required")
	}
	if len(f.Seeds) == 0 {
		return errors.New("experiment: seeds: at least one")
	}
	if err := f.Train.validate(true); err != nil {
		return err
	}
	if len(f.Variants) == 0 {
		return errors.New("experiment: variants: at least one")
	}
	seen := map[string]bool{}
	for i, v := range f.Variants {
		if v.Name == "" || seen[v.Name] {
			return fmt.Errorf("experiment: variant %d: name %q empty or repeated", i, v.Name)
		}
		seen[v.Name] = true
		if _, err := v.phases(f.Train.Steps); err != nil {
			return err
		}
	}
	if f.Pretrain != nil {
		p := f.Pretrain
		if len(p.Phases) == 0 {
			return errors.New("experiment: pretrain: phases: at least one")
		}
		if err := p.Train.validate(false); err != nil {
			return fmt.Errorf("pretrain: %w", err)
		}
		for i, ph := range p.Phases {
			if ph.Policy == "" || ph.Steps <= 0 {
				return fmt.Errorf("experiment: pretrain phase %d: policy and steps > 0 required", i)
			}
		}
		if _, err := p.Model.config(p.Vocab); err != nil {
			return err
		}
	}
	if len(f.Eval.Suites) == 0 && f.Data.Holdout == nil {
		return errors.New("experiment: eval: no suites and no holdout")
	}
	if h := f.Data.Holdout; h != nil && (h.File == "" || h.N <= 0) {
		return errors.New("experiment: data.holdout: file and n > 0 required")
	}
	return nil
}

func (t Train) validate(needSteps bool) error {
	switch {
	case t.Batch <= 0 || t.SeqLen <= 1:
		return fmt.Errorf("experiment: train: batch %d and seq_len %d must be positive", t.Batch, t.SeqLen)
	case needSteps && t.Steps <= 0:
		return errors.New("experiment: train: steps must be positive")
	case !(t.LR > 0) || t.MinLR < 0 || t.Warmup < 0:
		return errors.New("experiment: train: lr > 0, min_lr >= 0, warmup >= 0 required")
	}
	return nil
}

// resolvedPhase is a phase with its config as JSON and its step count.
type resolvedPhase struct {
	name   string
	policy string
	config []byte
	steps  int
}

// phases turns a variant into phases whose steps add up to total.
func (v Variant) phases(total int) ([]resolvedPhase, error) {
	if v.Policy != "" && len(v.Phases) > 0 {
		return nil, fmt.Errorf("experiment: variant %s: policy and phases are exclusive", v.Name)
	}
	if v.Policy != "" {
		cfg := v.Config
		if v.SwitchFraction > 0 {
			if v.SwitchFraction >= 1 {
				return nil, fmt.Errorf("experiment: variant %s: switch_fraction %v not in (0, 1)", v.Name, v.SwitchFraction)
			}
			cfg = map[string]any{}
			for k, x := range v.Config {
				cfg[k] = x
			}
			cfg["switch_step"] = max(1, int(math.Round(v.SwitchFraction*float64(total))))
		}
		blob, err := configJSON(cfg)
		if err != nil {
			return nil, fmt.Errorf("experiment: variant %s: %w", v.Name, err)
		}
		return []resolvedPhase{{name: v.Policy, policy: v.Policy, config: blob, steps: total}}, nil
	}
	if len(v.Phases) == 0 {
		return nil, fmt.Errorf("experiment: variant %s: policy or phases required", v.Name)
	}
	var out []resolvedPhase
	var sum float64
	used := 0
	for i, p := range v.Phases {
		if p.Policy == "" || !(p.Fraction > 0) {
			return nil, fmt.Errorf("experiment: variant %s phase %d: policy and fraction > 0 required", v.Name, i)
		}
		sum += p.Fraction
		steps := int(math.Round(sum*float64(total))) - used
		if i == len(v.Phases)-1 {
			steps = total - used
		}
		used += steps
		blob, err := configJSON(p.Config)
		if err != nil {
			return nil, fmt.Errorf("experiment: variant %s phase %d: %w", v.Name, i, err)
		}
		name := p.Name
		if name == "" {
			name = p.Policy
		}
		out = append(out, resolvedPhase{name: name, policy: p.Policy, config: blob, steps: steps})
	}
	if math.Abs(sum-1) > 1e-6 {
		return nil, fmt.Errorf("experiment: variant %s: phase fractions sum to %v, want 1", v.Name, sum)
	}
	return out, nil
}

// sftMask reports whether SFT instruction tokens are masked (the default).
func (v Variant) sftMask() bool { return v.SFTMask == nil || *v.SFTMask }

func configJSON(cfg map[string]any) ([]byte, error) {
	if len(cfg) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("policy config to JSON: %w", err)
	}
	return b, nil
}

// config builds the model configuration of a spec for a vocabulary.
func (s ModelSpec) config(vocab int) (model.Config, error) {
	name := s.Preset
	if name == "" {
		name = "tiny"
	}
	c, err := model.Preset(name)
	if err != nil {
		return c, fmt.Errorf("experiment: pretrain model: %w", err)
	}
	set := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	set(&c.HiddenSize, s.Hidden)
	set(&c.NumHiddenLayers, s.Layers)
	set(&c.NumAttentionHeads, s.Heads)
	set(&c.NumKeyValueHeads, s.KVHeads)
	set(&c.IntermediateSize, s.Intermediate)
	set(&c.MaxPositionEmbeddings, s.MaxPositions)
	set(&c.VocabSize, vocab)
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("experiment: pretrain model: %w", err)
	}
	return c, nil
}

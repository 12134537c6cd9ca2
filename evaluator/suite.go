package evaluator

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"replayd/tokenizer"
)

// Suite kinds.
const (
	// KindLoss measures held-out loss on raw text ({"text": ...} lines).
	KindLoss = "loss"
	// KindTask generates answers to instruction/input/output lines and scores them.
	KindTask = "task"
)

// Prompt templates of task suites.
const (
	TemplateChat  = "chat"  // the chat template, as trained
	TemplatePlain = "plain" // a plain prompt without template markers
	TemplateBoth  = "both"  // both; the group score uses the chat one
)

// SuiteConfig declares one evaluation suite.
type SuiteConfig struct {
	// Name identifies the suite in scores ("fpb", "boolq", ...).
	Name string `mapstructure:"name" json:"name" yaml:"name"`
	// Group is "general", "seen", "unseen" or "domain" (any name works; it
	// becomes a score key).
	Group string `mapstructure:"group" json:"group" yaml:"group"`
	// Kind is KindLoss or KindTask.
	Kind string `mapstructure:"kind" json:"kind" yaml:"kind"`
	// File is a JSONL file.
	File string `mapstructure:"file" json:"file" yaml:"file"`
	// Metric of a task suite: exact, label, rouge1 or entity_f1.
	Metric string `mapstructure:"metric" json:"metric" yaml:"metric"`
	// Labels is the label set of a label suite; empty collects it from the golds.
	Labels []string `mapstructure:"labels" json:"labels,omitempty" yaml:"labels"`
	// MaxSamples caps the lines used (the first ones); 0 uses all.
	MaxSamples int `mapstructure:"max_samples" json:"max_samples" yaml:"max_samples"`
	// MaxNewTokens caps generation per answer.
	MaxNewTokens int `mapstructure:"max_new_tokens" json:"max_new_tokens" yaml:"max_new_tokens"`
	// MaxTokens truncates loss documents and prompts (from the left for prompts).
	MaxTokens int `mapstructure:"max_tokens" json:"max_tokens" yaml:"max_tokens"`
	// Template is chat, plain or both.
	Template string `mapstructure:"template" json:"template" yaml:"template"`
}

// Validate checks a suite's fields and that its file exists.
func (s SuiteConfig) Validate() error {
	if s.Name == "" || strings.ContainsAny(s.Name, "/ ") {
		return fmt.Errorf("suite name %q: want a non-empty name without '/' or spaces", s.Name)
	}
	if s.Group == "" {
		return fmt.Errorf("suite %s: group is empty", s.Name)
	}
	switch s.Kind {
	case KindLoss:
	case KindTask:
		if _, err := NewAccumulator(s.Metric, nil); err != nil {
			return fmt.Errorf("suite %s: %w", s.Name, err)
		}
		switch s.Template {
		case "", TemplateChat, TemplatePlain, TemplateBoth:
		default:
			return fmt.Errorf("suite %s: template %q (want chat, plain or both)", s.Name, s.Template)
		}
	default:
		return fmt.Errorf("suite %s: kind %q (want loss or task)", s.Name, s.Kind)
	}
	if s.MaxSamples < 0 || s.MaxNewTokens < 0 || s.MaxTokens < 0 {
		return fmt.Errorf("suite %s: negative limit", s.Name)
	}
	if _, err := os.Stat(s.File); err != nil {
		return fmt.Errorf("suite %s: %w", s.Name, err)
	}
	return nil
}

// Model is what evaluation needs of a model snapshot. Implementations must be
// safe for concurrent use by the evaluator's workers.
type Model interface {
	// NLL returns the summed negative log-likelihood of the tokens whose mask
	// is 1, each predicted from the tokens before it, and how many there were.
	NLL(ctx context.Context, tokens []int32, mask []uint8) (sum float64, n int, err error)
	// Generate continues prompt greedily until a stop id or maxNew tokens and
	// returns the new tokens (without the stop id).
	Generate(ctx context.Context, prompt []int32, maxNew int, stop []int32) ([]int32, error)
}

// Codec renders evaluation text into tokens and back; *tokenizer.ChatTemplate
// together with its tokenizer provides it.
type Codec interface {
	EncodeDAPT(text string) (tokens []int32, mask []uint8)
	Prompt(turns []tokenizer.Turn) []int32
	PlainPrompt(instruction, input string) []int32
	StopIDs() []int32
	Decode(ids []int32) string
}

// SuiteResult is the outcome of one suite (one template of a task suite).
type SuiteResult struct {
	Suite    string  `json:"suite"`
	Group    string  `json:"group"`
	Metric   string  `json:"metric"`
	Template string  `json:"template,omitempty"`
	Value    float64 `json:"value"`
	N        int     `json:"n"`
	// Key is the score key of this result.
	Key     string  `json:"key"`
	Seconds float64 `json:"seconds"`
}

// Report is a full evaluation.
type Report struct {
	Suites []SuiteResult `json:"suites"`
	Scores Scores        `json:"scores"`
}

// Evaluator runs suites against a model.
type Evaluator struct {
	Suites []SuiteConfig
	// Workers is how many samples are evaluated at once.
	Workers int
	// Progress, when set, is called after each sample of each suite.
	Progress func(suite string, done, total int)
}

// Run evaluates every suite and aggregates group scores: "loss/<group>" is the
// mean loss of the group's loss suites; "<group>" is the mean score (points)
// of its task suites.
func (e *Evaluator) Run(ctx context.Context, m Model, c Codec) (Report, error) {
	var rep Report
	for _, s := range e.Suites {
		rs, err := e.runSuite(ctx, m, c, s)
		if err != nil {
			return Report{}, fmt.Errorf("suite %s: %w", s.Name, err)
		}
		rep.Suites = append(rep.Suites, rs...)
	}
	rep.Scores = aggregate(rep.Suites)
	return rep, nil
}

func aggregate(results []SuiteResult) Scores {
	scores := Scores{}
	sums := map[string][]float64{}
	for _, r := range results {
		scores[r.Key] = r.Value
		if r.Template == TemplatePlain && hasChatTwin(results, r) {
			continue
		}
		g := r.Group
		if r.Metric == MetricLoss {
			g = "loss/" + g
		}
		sums[g] = append(sums[g], r.Value)
	}
	for g, vs := range sums {
		var s float64
		for _, v := range vs {
			s += v
		}
		scores[g] = s / float64(len(vs))
	}
	return scores
}

func hasChatTwin(results []SuiteResult, r SuiteResult) bool {
	for _, o := range results {
		if o.Suite == r.Suite && o.Template == TemplateChat {
			return true
		}
	}
	return false
}

type jsonLine struct {
	Text        string `json:"text"`
	Instruction string `json:"instruction"`
	Input       string `json:"input"`
	Output      string `json:"output"`
}

func readLines(path string, max int) ([]jsonLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var out []jsonLine
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var l jsonLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, l)
		if max > 0 && len(out) >= max {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

func (e *Evaluator) runSuite(ctx context.Context, m Model, c Codec, s SuiteConfig) ([]SuiteResult, error) {
	lines, err := readLines(s.File, s.MaxSamples)
	if err != nil {
		return nil, err
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("%s has no samples", s.File)
	}
	if s.Kind == KindLoss {
		return e.lossSuite(ctx, m, c, s, lines)
	}
	var templates []string
	switch s.Template {
	case "", TemplateChat:
		templates = []string{TemplateChat}
	case TemplatePlain:
		templates = []string{TemplatePlain}
	case TemplateBoth:
		templates = []string{TemplateChat, TemplatePlain}
	}
	var out []SuiteResult
	for _, tmpl := range templates {
		r, err := e.taskSuite(ctx, m, c, s, lines, tmpl)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// forEach runs fn on indices 0..n-1 with e.Workers goroutines and stops at the
// first error.
func (e *Evaluator) forEach(ctx context.Context, suite string, n int, fn func(ctx context.Context, i int) error) error {
	workers := e.Workers
	if workers < 1 {
		workers = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		next     int
		done     int
		wg       sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				mu.Lock()
				done++
				d := done
				mu.Unlock()
				if e.Progress != nil {
					e.Progress(suite, d, n)
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

func (e *Evaluator) lossSuite(ctx context.Context, m Model, c Codec, s SuiteConfig, lines []jsonLine) ([]SuiteResult, error) {
	start := time.Now()
	sums := make([]float64, len(lines))
	counts := make([]int, len(lines))
	err := e.forEach(ctx, s.Name, len(lines), func(ctx context.Context, i int) error {
		text := lines[i].Text
		if text == "" {
			return fmt.Errorf("line %d has no text", i+1)
		}
		toks, mask := c.EncodeDAPT(text)
		if s.MaxTokens > 0 && len(toks) > s.MaxTokens {
			toks, mask = toks[:s.MaxTokens], mask[:s.MaxTokens]
		}
		sum, n, err := m.NLL(ctx, toks, mask)
		sums[i], counts[i] = sum, n
		return err
	})
	if err != nil {
		return nil, err
	}
	// Token-weighted mean, summed in order so the result is deterministic.
	var sum float64
	var n int
	for i := range sums {
		sum += sums[i]
		n += counts[i]
	}
	if n == 0 {
		return nil, fmt.Errorf("no tokens scored")
	}
	loss := sum / float64(n)
	return []SuiteResult{{
		Suite: s.Name, Group: s.Group, Metric: MetricLoss, Value: loss, N: len(lines),
		Key: s.Name + "/" + MetricLoss, Seconds: time.Since(start).Seconds(),
	}}, nil
}

func (e *Evaluator) taskSuite(ctx context.Context, m Model, c Codec, s SuiteConfig, lines []jsonLine, tmpl string) (SuiteResult, error) {
	start := time.Now()
	maxNew := s.MaxNewTokens
	if maxNew == 0 {
		maxNew = 32
	}
	preds := make([]string, len(lines))
	err := e.forEach(ctx, s.Name, len(lines), func(ctx context.Context, i int) error {
		l := lines[i]
		var prompt []int32
		if tmpl == TemplatePlain {
			prompt = c.PlainPrompt(l.Instruction, l.Input)
		} else {
			user := l.Instruction
			if l.Input != "" {
				user += "\n\n" + l.Input
			}
			prompt = c.Prompt([]tokenizer.Turn{{Role: "user", Content: user}})
		}
		if s.MaxTokens > 0 && len(prompt) > s.MaxTokens {
			// Keep the end: it holds the question and the answer header.
			prompt = prompt[len(prompt)-s.MaxTokens:]
		}
		out, err := m.Generate(ctx, prompt, maxNew, c.StopIDs())
		if err != nil {
			return err
		}
		preds[i] = strings.TrimSpace(c.Decode(out))
		return nil
	})
	if err != nil {
		return SuiteResult{}, err
	}
	acc, err := NewAccumulator(s.Metric, s.Labels)
	if err != nil {
		return SuiteResult{}, err
	}
	for i, l := range lines {
		acc.Add(preds[i], l.Output)
	}
	key := s.Name + "/" + s.Metric
	if tmpl == TemplatePlain {
		key += "@plain"
	}
	v := 100 * acc.Value()
	if math.IsNaN(v) {
		return SuiteResult{}, fmt.Errorf("metric is NaN")
	}
	return SuiteResult{
		Suite: s.Name, Group: s.Group, Metric: s.Metric, Template: tmpl, Value: v, N: acc.N(),
		Key: key, Seconds: time.Since(start).Seconds(),
	}, nil
}

// Table renders a report as an aligned text table.
func (r Report) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-22s %-9s %-10s %-6s %6s %10s\n", "suite", "group", "metric", "tmpl", "n", "value")
	for _, s := range r.Suites {
		fmt.Fprintf(&b, "%-22s %-9s %-10s %-6s %6d %10.4f\n", s.Suite, s.Group, s.Metric, s.Template, s.N, s.Value)
	}
	keys := make([]string, 0, len(r.Scores))
	for k := range r.Scores {
		if !strings.Contains(k, "/") || strings.HasPrefix(k, "loss/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	b.WriteString("\ngroups:\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-20s %10.4f\n", k, r.Scores[k])
	}
	return b.String()
}

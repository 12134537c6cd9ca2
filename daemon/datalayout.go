package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"

	"replayd/evaluator"
	"replayd/ingest"
)

// DataSet is a directory in the layout of ../shared/data: what to publish
// to which subject, and the evaluation suites its held-out files make.
type DataSet struct {
	// Train maps kind/domain ("dapt/fin", ...) to the files published there.
	Train map[string][]string
	// Suites are built from the held-out files.
	Suites []evaluator.SuiteConfig
}

// ScanData reads a data directory: <finance|general>_raw/*train*.jsonl are
// DAPT data, finance_sft/*train*.jsonl and general_sft/*.jsonl SFT data;
// *_raw/*val*.jsonl become held-out loss suites (domain, general),
// finance_sft/*test*.jsonl seen-task suites and general_eval/*.jsonl general
// task suites. A task suite's metric follows its answers: entity lines give
// entity F1, a small label set gives label accuracy, anything else ROUGE-1.
func ScanData(dir, domain, general string) (DataSet, error) {
	ds := DataSet{Train: map[string][]string{}}
	glob := func(pattern string) []string {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		sort.Strings(m)
		return m
	}
	ds.Train["dapt/"+domain] = glob("finance_raw/*train*.jsonl")
	ds.Train["sft/"+domain] = glob("finance_sft/*train*.jsonl")
	ds.Train["dapt/"+general] = glob("general_raw/*train*.jsonl")
	ds.Train["sft/"+general] = glob("general_sft/*.jsonl")
	n := 0
	for _, fs := range ds.Train {
		n += len(fs)
	}
	if n == 0 {
		return DataSet{}, fmt.Errorf("%s has no training files in the layout of shared/data (finance_raw/*train*.jsonl, ...)", dir)
	}
	for _, f := range glob("finance_raw/*val*.jsonl") {
		ds.Suites = append(ds.Suites, lossSuite(f, "domain"))
	}
	for _, f := range glob("general_raw/*val*.jsonl") {
		ds.Suites = append(ds.Suites, lossSuite(f, "general"))
	}
	for _, g := range []struct{ pattern, group string }{{"finance_sft/*test*.jsonl", "seen"}, {"finance_sft_unseen/*.jsonl", "unseen"}, {"general_eval/*.jsonl", "general"}} {
		for _, f := range glob(g.pattern) {
			s, err := taskSuite(f, g.group)
			if err != nil {
				return DataSet{}, err
			}
			ds.Suites = append(ds.Suites, s)
		}
	}
	return ds, nil
}

func suiteName(path string) string {
	b := strings.TrimSuffix(filepath.Base(path), ".jsonl")
	return strings.NewReplacer("/", "_", " ", "_").Replace(b)
}

func lossSuite(path, group string) evaluator.SuiteConfig {
	return evaluator.SuiteConfig{Name: suiteName(path), Group: group, Kind: evaluator.KindLoss, File: path, MaxSamples: 32, MaxTokens: 256}
}

func taskSuite(path, group string) (evaluator.SuiteConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return evaluator.SuiteConfig{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	labels := map[string]bool{}
	entities, lines := 0, 0
	for sc.Scan() && lines < 500 {
		var l struct{ Output string }
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		lines++
		labels[evaluator.Normalize(l.Output)] = true
		if len(evaluator.ParseEntities(l.Output)) > 0 || l.Output == "None" {
			entities++
		}
	}
	s := evaluator.SuiteConfig{Name: suiteName(path), Group: group, Kind: evaluator.KindTask, File: path, MaxSamples: 50, MaxTokens: 384, Template: evaluator.TemplateChat}
	switch {
	case lines > 0 && len(labels) <= 10:
		s.Metric, s.MaxNewTokens = evaluator.MetricLabel, 4
	case lines > 0 && entities*2 >= lines:
		s.Metric, s.MaxNewTokens = evaluator.MetricEntityF1, 48
	default:
		s.Metric, s.MaxNewTokens = evaluator.MetricROUGE1, 64
	}
	return s, nil
}

// publishData publishes a data set's training files to their subjects and
// returns the totals.
func publishData(ctx context.Context, nc *nats.Conn, ds DataSet, subjects ingest.Subjects, limits ingest.Limits, progress io.Writer) (ingest.PublishReport, error) {
	var total ingest.PublishReport
	keys := make([]string, 0, len(ds.Train))
	for k := range ds.Train {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		files := ds.Train[key]
		if len(files) == 0 {
			continue
		}
		kindName, domain, _ := strings.Cut(key, "/")
		kind, err := ingest.ParseKind(kindName)
		if err != nil {
			return total, err
		}
		rep, err := ingest.PublishFiles(ctx, nc, files, nil, ingest.PublishOptions{Kind: kind, Domain: domain, Subjects: subjects, Limits: limits, Progress: progress})
		if err != nil {
			return total, fmt.Errorf("publish %s: %w", key, err)
		}
		total.Lines += rep.Lines
		total.Published += rep.Published
		total.Duplicates += rep.Duplicates
		total.Rejected += rep.Rejected
		total.Bytes += rep.Bytes
	}
	return total, nil
}

// SeedFromData returns a RunOptions.SeedData that publishes the data set's
// training files when the ingest stream is empty (a restarted run does not
// publish them again). maxBytes caps a sample (0: the NATS default of
// 1 MiB); out, when set, gets a line before and after.
func SeedFromData(ds DataSet, maxBytes int, out io.Writer) func(context.Context, *ingest.Conn, ingest.Subjects) error {
	return func(ctx context.Context, c *ingest.Conn, subjects ingest.Subjects) error {
		last, err := streamMsgs(ctx, c, subjects)
		if err != nil || last > 0 {
			return err
		}
		if out != nil {
			fmt.Fprintln(out, "demo: publishing the data set to the ingest stream")
		}
		rep, err := publishData(ctx, c.NC, ds, subjects, ingest.Limits{MaxBytes: maxBytes}, nil)
		if err == nil && out != nil {
			fmt.Fprintf(out, "demo: published %d samples (%d duplicates, %d rejected)\n", rep.Published, rep.Duplicates, rep.Rejected)
		}
		return err
	}
}

// streamMsgs counts the messages in the stream that captures subjects.
func streamMsgs(ctx context.Context, c *ingest.Conn, subjects ingest.Subjects) (uint64, error) {
	name, err := c.JS.StreamNameBySubject(ctx, subjects.Wildcard())
	if err != nil {
		return 0, fmt.Errorf("find ingest stream: %w", err)
	}
	s, err := c.JS.Stream(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("ingest stream: %w", err)
	}
	return s.CachedInfo().State.Msgs, nil
}

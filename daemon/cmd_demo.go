package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"replayd/evaluator"
	"replayd/ops"
	"replayd/tokenizer"
)

// runDemo is `replayd demo`: the daemon on synthetic (or given) data with an
// embedded NATS, a tokenizer and a tiny model made on the spot.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	file := configFlags(fs)
	dataDir := fs.String("data", "", "real JSONL in the layout of ../shared/data instead of the synthetic demo data")
	fresh := fs.Bool("fresh", false, "delete the demo's data directory first")
	vocab := fs.Int("vocab", 0, "tokenizer vocabulary (default 1024 for synthetic data, 4096 with --data)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("demo: %w", ErrUsage)
	}
	var ds DataSet
	l, cfg, log, level, err := loadConfig(*file, fs, stderr, func(c *ops.Config) {
		set := func(key string, apply func()) {
			if !fs.Changed(key) && os.Getenv(ops.EnvName(key)) == "" {
				apply()
			}
		}
		set("data_dir", func() { c.DataDir = "replayd-demo" })
		set("train.lr", func() { c.Train.LR = 2e-3 })
		set("eval.every_steps", func() { c.Eval.EverySteps = 60 })
		set("train.checkpoint_every", func() { c.Train.CheckpointEvery = 30 })
	})
	if err != nil {
		return err
	}
	if *fresh {
		if err := os.RemoveAll(cfg.DataDir); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	src := *dataDir
	if src == "" {
		src = filepath.Join(cfg.DataDir, "demo-data")
		if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
			if _, err := WriteDemoData(src, cfg.Train.Seed); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "demo: wrote synthetic data to %s\n", src)
		}
	}
	if ds, err = ScanData(src, cfg.Ingest.Domain, cfg.Ingest.GeneralDomain); err != nil {
		return err
	}
	if len(cfg.Eval.Suites) == 0 {
		cfg.Eval.Suites = ds.Suites
	}
	if len(cfg.Gate.Rules) == 0 {
		// Publish when the domain held-out loss improves by 2% on the last
		// published checkpoint and general loss stays within 10% of the base.
		cfg.Gate.Rules = []evaluator.Rule{
			{Score: "loss/domain", Kind: evaluator.RuleMinGain, Against: evaluator.AgainstLast, Value: 0.02, Relative: true},
			{Score: "loss/general", Kind: evaluator.RuleMaxRegression, Against: evaluator.AgainstBaseline, Value: 0.10, Relative: true},
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	tok, err := demoTokenizer(ctx, cfg, ds, src != *dataDir, *vocab, stderr)
	if err != nil {
		return err
	}
	seed := SeedFromData(ds, cfg.Ingest.MaxSampleBytes, stdout)
	ready := func(httpAddr, natsURL string) {
		fmt.Fprintf(stdout, "demo: training; NATS at %s (replayd ingest --url %s FILE.jsonl adds data); Ctrl-C stops with a checkpoint\n", natsURL, natsURL)
	}
	return Run(ctx, cfg, RunOptions{Out: stdout, Loader: l, Tokenizer: tok, SeedData: seed, Ready: ready}, log, level)
}

// demoTokenizer loads the demo's tokenizer or trains one on the data set.
func demoTokenizer(ctx context.Context, cfg ops.Config, ds DataSet, synthetic bool, vocab int, progress io.Writer) (*tokenizer.Tokenizer, error) {
	if cfg.Model.Tokenizer != "" || cfg.Model.Base != "" {
		return nil, nil
	}
	path := filepath.Join(cfg.DataDir, "tokenizer.json")
	if tok, err := tokenizer.Load(path); err == nil {
		return tok, nil
	}
	if vocab == 0 {
		vocab = 4096
		if synthetic {
			vocab = 1024
		}
	}
	var files []string
	for _, fs := range ds.Train {
		files = append(files, fs...)
	}
	tok, err := tokenizer.Train(ctx, tokenizer.TrainOptions{VocabSize: vocab, Progress: progress}, files...)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	if err := tok.Save(path); err != nil {
		return nil, err
	}
	return tok, nil
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/pflag"

	"replayd/evaluator"
	"replayd/model"
	"replayd/tokenizer"
)

// runEval is `replayd eval --checkpoint DIR`: evaluates a checkpoint on the
// configured suites (or those of a data directory) and prints a table.
func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("eval", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	file := configFlags(fs)
	ckpt := fs.String("checkpoint", "", "checkpoint directory (model.safetensors, config.json, tokenizer.json)")
	data := fs.String("data", "", "build suites from a data directory in the layout of ../shared/data")
	maxSamples := fs.Int("max-samples", 0, "cap every suite at this many samples (0: as configured)")
	threads := fs.Int("threads", runtime.GOMAXPROCS(0), "cores to use")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("eval: %w", ErrUsage)
	}
	if *ckpt == "" {
		return fmt.Errorf("eval: --checkpoint is required: %w", ErrUsage)
	}
	_, cfg, _, _, err := loadConfig(*file, fs, stderr, nil)
	if err != nil {
		return err
	}
	suites := cfg.Eval.Suites
	if *data != "" {
		ds, err := ScanData(*data, cfg.Ingest.Domain, cfg.Ingest.GeneralDomain)
		if err != nil {
			return err
		}
		suites = ds.Suites
	}
	if len(suites) == 0 {
		return errors.New("eval: no suites: configure eval.suites or pass --data DIR")
	}
	for i := range suites {
		if *maxSamples > 0 && (suites[i].MaxSamples == 0 || suites[i].MaxSamples > *maxSamples) {
			suites[i].MaxSamples = *maxSamples
		}
	}
	tok, err := tokenizer.Load(filepath.Join(*ckpt, "tokenizer.json"))
	if err != nil {
		return err
	}
	tmpl, err := tok.ChatTemplate()
	if err != nil {
		return err
	}
	m, err := model.Load(*ckpt, model.NewCPUBackend(*threads))
	if err != nil {
		return err
	}
	bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("evaluating"),
		progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(200*time.Millisecond))
	ev := &evaluator.Evaluator{Suites: suites, Workers: 1, Progress: func(suite string, done, total int) {
		bar.Describe(fmt.Sprintf("%s %d/%d", suite, done, total))
		bar.Add(1)
	}}
	rep, err := ev.Run(ctx, evaluator.ModelAdapter{M: m}, evaluator.ChatCodec{ChatTemplate: tmpl, Tok: tok})
	bar.Finish()
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, rep.Table())
	return nil
}

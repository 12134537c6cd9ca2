package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"replayd/experiment"
)

// runExperiment is `replayd experiment [--quick] FILE.yaml`: post-trains the
// file's base checkpoint under every variant and seed, evaluates each and
// writes the results table, CSV and plots (see experiments/README.md).
// The base is pretrained first when it is missing and the file says how.
func runExperiment(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("experiment", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "apply the file's quick: overrides (a few variants, one seed, a tiny budget)")
	threads := fs.Int("threads", 0, "CPU threads (0: the file's threads, else GOMAXPROCS)")
	report := fs.Bool("report", false, "only rewrite table.md, results.csv and the plots from the out dir's runs.jsonl")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("experiment: %w", ErrUsage)
	}
	f, err := loadExperiment(fs, *quick, *threads)
	if err != nil {
		return err
	}
	cmd := "replayd experiment " + strings.Join(args, " ")
	var runs []experiment.RunResult
	if *report {
		if runs, err = experiment.ReadRuns(f); err == nil {
			err = experiment.WriteReport(f, runs, "")
		}
	} else {
		runs, err = experiment.Run(ctx, f, experiment.Options{Progress: stderr, Command: cmd})
	}
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, experiment.Markdown(f, experiment.Aggregate(f, runs)))
	fmt.Fprintf(stdout, "results in %s (table.md, results.csv, runs.jsonl, plot_*.svg)\n", f.Out)
	return nil
}

// loadExperiment reads the one positional FILE.yaml and applies --quick
// and --threads.
func loadExperiment(fs *pflag.FlagSet, quick bool, threads int) (*experiment.File, error) {
	if fs.NArg() != 1 {
		return nil, fmt.Errorf("%s: want one experiment file (FILE.yaml): %w", fs.Name(), ErrUsage)
	}
	f, err := experiment.LoadFile(fs.Arg(0))
	if err != nil {
		return nil, err
	}
	if quick {
		if f, err = f.ApplyQuick(); err != nil {
			return nil, err
		}
	}
	if threads > 0 {
		f.Threads = threads
	}
	return f, nil
}

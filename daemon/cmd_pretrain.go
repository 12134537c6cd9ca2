package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"replayd/experiment"
)

// runPretrain is `replayd pretrain [--quick] FILE.yaml`: builds the
// experiment file's base checkpoint from scratch (tokenizer, then a model
// trained on general raw text and general instructions), replacing any
// existing one.
func runPretrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("pretrain", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "apply the file's quick: overrides (its base path and pretrain steps)")
	threads := fs.Int("threads", 0, "CPU threads (0: the file's threads, else GOMAXPROCS)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("pretrain: %w", ErrUsage)
	}
	f, err := loadExperiment(fs, *quick, *threads)
	if err != nil {
		return err
	}
	if err := experiment.Pretrain(ctx, f, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "base checkpoint written to %s\n", f.Base)
	return nil
}

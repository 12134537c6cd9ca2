package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// runServe is `replayd serve`: the long-running daemon.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	file := configFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("serve: %w", ErrUsage)
	}
	l, cfg, log, level, err := loadConfig(*file, fs, stderr, nil)
	if err != nil {
		return err
	}
	return Run(ctx, cfg, RunOptions{Out: stdout, Loader: l}, log, level)
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	"replayd/evaluator"
	"replayd/ingest"
)

// runCheckpoints is `replayd checkpoints list | pull | watch` against the
// registry of a running daemon's NATS.
func runCheckpoints(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("checkpoints: want list, pull or watch: %w", ErrUsage)
	}
	sub := args[0]
	fs := pflag.NewFlagSet("checkpoints "+sub, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	file := configFlags(fs)
	version := fs.String("version", "", "version to pull (default: latest)")
	latest := fs.Bool("latest", false, "pull the latest version")
	out := fs.String("out", "", "directory to pull into")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("checkpoints: %w", ErrUsage)
	}
	_, cfg, _, _, err := loadConfig(*file, fs, stderr, nil)
	if err != nil {
		return err
	}
	if cfg.NATS.URL == "" {
		return errors.New("checkpoints: --nats.url is required (the daemon prints its NATS address)")
	}
	conn, err := ingest.Connect(ctx, ingest.NATSOptions{URL: cfg.NATS.URL, CredsFile: cfg.NATS.CredsFile, User: cfg.NATS.User,
		Password: cfg.NATS.Password, TLSCA: cfg.NATS.TLSCA, TLSCert: cfg.NATS.TLSCert, TLSKey: cfg.NATS.TLSKey})
	if err != nil {
		return err
	}
	defer conn.Close()
	reg, err := evaluator.OpenRegistry(ctx, conn.JS, evaluator.RegistryOptions{ObjectBucket: cfg.Publish.ObjectBucket, KVBucket: cfg.Publish.KVBucket, Replicas: cfg.Ingest.Replicas})
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		ms, err := reg.List(ctx)
		if err != nil {
			return err
		}
		cur, _ := reg.Latest(ctx)
		for _, m := range ms {
			var size int64
			for _, f := range m.Files {
				size += f.Size
			}
			mark := ""
			if m.Version == cur {
				mark = "  (latest)"
			}
			fmt.Fprintf(stdout, "%s  %s  %.1f MB%s\n", m.Version, m.Published.Format(time.RFC3339), float64(size)/1e6, mark)
		}
		return nil
	case "pull":
		if *out == "" {
			return fmt.Errorf("checkpoints pull: --out is required: %w", ErrUsage)
		}
		if *latest && *version != "" {
			return fmt.Errorf("checkpoints pull: --latest and --version exclude each other: %w", ErrUsage)
		}
		m, err := reg.PullProgress(ctx, *version, *out, stderr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pulled %s into %s (%d files, checksums verified)\n", m.Version, *out, len(m.Files))
		return nil
	case "watch":
		err := reg.Watch(ctx, func(v string) { fmt.Fprintf(stdout, "%s latest=%s\n", time.Now().UTC().Format(time.RFC3339), v) })
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	return fmt.Errorf("checkpoints: unknown subcommand %q (want list, pull or watch): %w", sub, ErrUsage)
}

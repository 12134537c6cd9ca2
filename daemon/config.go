package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/pflag"

	"replayd/ops"
)

// configFlags adds --config and a flag per configuration key to fs.
func configFlags(fs *pflag.FlagSet) *string {
	file := fs.String("config", "", "YAML configuration file (see replayd.example.yaml)")
	ops.AddFlags(fs)
	return file
}

// loadConfig reads the configuration and sets up logging.
func loadConfig(file string, fs *pflag.FlagSet, stderr io.Writer, adjust func(*ops.Config)) (ops.Loader, ops.Config, *slog.Logger, *slog.LevelVar, error) {
	l := ops.Loader{File: file, Env: os.Environ(), Flags: fs}
	cfg, err := l.Load()
	if err != nil {
		return l, cfg, nil, nil, err
	}
	if adjust != nil {
		adjust(&cfg)
		if err := cfg.Validate(); err != nil {
			return l, cfg, nil, nil, err
		}
	}
	level := new(slog.LevelVar)
	lv, err := ops.ParseLevel(cfg.Log.Level)
	if err != nil {
		return l, cfg, nil, nil, err
	}
	level.Set(lv)
	log, err := ops.NewLogger(stderr, cfg.Log.Format, level)
	if err != nil {
		return l, cfg, nil, nil, err
	}
	return l, cfg, log, level, nil
}

// watchConfig applies live keys from config reloads until ctx ends.
func (d *Daemon) watchConfig(ctx context.Context, l ops.Loader) {
	if l.File == "" {
		return
	}
	d.mu.Lock()
	cur := d.live
	d.mu.Unlock()
	err := ops.Watch(ctx, l, cur, func(ch ops.Change) {
		if ch.Err != nil {
			d.log.Error("config reload refused; the running configuration stays", "err", ch.Err)
			return
		}
		if len(ch.NeedRestart) > 0 {
			d.log.Warn("config keys changed that need a restart", "keys", ch.NeedRestart)
		}
		if len(ch.Live) == 0 {
			return
		}
		d.mu.Lock()
		d.live = ch.Config
		d.mu.Unlock()
		if lv, err := ops.ParseLevel(ch.Config.Log.Level); err == nil && d.level != nil {
			d.level.Set(lv)
		}
		d.log.Info("config reloaded", "applied", ch.Live)
	})
	if err != nil {
		d.log.Error("config watch", "err", err)
	}
}

package ops

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/grafana/pyroscope-go"
)

// Profiler is continuous profiling with pyroscope, or nothing when no server
// is configured.
type Profiler struct {
	p       *pyroscope.Profiler
	timeout time.Duration
}

// StartProfiler starts pyroscope when cfg.Server is set. Uploads use an HTTP
// client with cfg.Timeout, since the library's own default waits 30 s on a
// silent server.
func StartProfiler(cfg PyroscopeConfig, log *slog.Logger) (*Profiler, error) {
	if cfg.Server == "" {
		return &Profiler{}, nil
	}
	p, err := pyroscope.Start(pyroscope.Config{
		ApplicationName: cfg.AppName,
		ServerAddress:   cfg.Server,
		HTTPClient:      &http.Client{Timeout: cfg.Timeout},
		Logger:          slogAdapter{log},
	})
	if err != nil {
		return nil, fmt.Errorf("start pyroscope: %w", err)
	}
	return &Profiler{p: p, timeout: cfg.Timeout}, nil
}

// Stop flushes and stops profiling, giving up after the configured timeout:
// the library's Stop blocks until its last upload ends.
func (p *Profiler) Stop(ctx context.Context) error {
	if p == nil || p.p == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- p.p.Stop() }()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("stop pyroscope: %w", err)
		}
		return nil
	case <-ctx.Done():
		// The Stop goroutine ends when the upload's HTTP timeout fires.
		return fmt.Errorf("stop pyroscope: gave up after %v", p.timeout)
	}
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Infof(f string, args ...any) {
	a.l.Debug(fmt.Sprintf(f, args...), "component", "pyroscope")
}
func (a slogAdapter) Debugf(f string, args ...any) {
	a.l.Debug(fmt.Sprintf(f, args...), "component", "pyroscope")
}
func (a slogAdapter) Errorf(f string, args ...any) {
	a.l.Warn(fmt.Sprintf(f, args...), "component", "pyroscope")
}

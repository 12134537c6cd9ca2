package ops

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is the HTTP face of the daemon: the status page, /status, /metrics,
// /healthz, /readyz, published checkpoints, and token-guarded actions.
type Server struct {
	Status  *Status
	Metrics *Metrics
	// Checkpoints serves published checkpoints under /checkpoints/; nil omits it.
	Checkpoints http.Handler
	// Token guards POST endpoints; empty disables them.
	Token string
	// Actions are POST /api/<name> handlers (e.g. "eval", "policy"),
	// guarded by Token. The request body is capped at MaxActionBody.
	Actions map[string]func(r *http.Request) (any, error)
	Log     *slog.Logger
}

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		snap := s.Status.Snapshot()
		if !snap.Ready {
			http.Error(w, "not ready: "+snap.Phase, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Status.Snapshot())
	})
	if s.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{}))
	}
	if s.Checkpoints != nil {
		mux.Handle("GET /checkpoints/", http.StripPrefix("/checkpoints", s.Checkpoints))
	}
	mux.HandleFunc("POST /api/{action}", s.action)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := pageTmpl.Execute(w, renderPage(s.Status.Snapshot())); err != nil && s.Log != nil {
			s.Log.Warn("render status page", "err", err)
		}
	})
	return mux
}

func (s *Server) action(w http.ResponseWriter, r *http.Request) {
	if s.Token == "" {
		http.Error(w, "state-changing endpoints are disabled: set http.token", http.StatusForbidden)
		return
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.Token)) != 1 {
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	fn, ok := s.Actions[r.PathValue("action")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxActionBody)
	res, err := fn(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

// MaxActionBody caps the body of a POST /api/<name> request (a policy module).
const MaxActionBody = 64 << 20

// Serve listens on addr and serves h until ctx ends, then shuts down within
// grace. It returns the bound address on ready, and the serve error on done.
func Serve(ctx context.Context, addr string, h http.Handler, grace time.Duration) (bound string, done <-chan error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ch := make(chan error, 1)
	go func() {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			ch <- err
			return
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		err := srv.Shutdown(sctx)
		if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
		ch <- err
	}()
	return ln.Addr().String(), ch, nil
}

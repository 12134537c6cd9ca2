package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"replayd/mixer"
	"replayd/mixer/policystore"
)

// watchPolicies follows the policy store's active pointer (Store.Follow):
// each new module is fetched, validated by the host (compile, exports, ABI,
// a dry run on the mixer's current statistics) and swapped in between two
// batches. A module that fails validation is refused and the running
// policy continues.
func (d *Daemon) watchPolicies(ctx context.Context, wg *sync.WaitGroup) {
	onSwap := func(pol *mixer.Policy) {
		d.metrics.PolicySwaps.Inc()
		d.mu.Lock()
		step := d.state.Step
		d.mu.Unlock()
		d.recordPolicy(pol, step)
		d.log.Info("policy swapped", "policy", pol.Name(), "hash", pol.Hash())
	}
	onErr := func(p policystore.Pointer, err error) {
		d.metrics.PolicyFailures.Inc()
		d.log.Error("policy refused; the running policy continues", "policy", p.Name, "sha256", p.SHA256, "running", d.mix.Policy().Name(), "err", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := d.policies.Follow(ctx, d.host, d.mix, onSwap, onErr)
		if err != nil && !errors.Is(err, context.Canceled) {
			d.log.Error("policy watch stopped", "err", err)
		}
	}()
}

// pushPolicy is POST /api/policy?name=N with the module as the body: it is
// stored and made active in the policy store, and the watcher validates it
// before it runs (a refused module leaves the running policy in place).
func (d *Daemon) pushPolicy(r *http.Request) (any, error) {
	name := r.URL.Query().Get("name")
	if name == "" {
		return nil, errors.New("policy: ?name= is required")
	}
	wasm, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, fmt.Errorf("policy: read body: %w", err)
	}
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil, errors.New("policy: the body is not a WASM module")
	}
	var config []byte
	if c := r.URL.Query().Get("config"); c != "" {
		config = []byte(c)
	}
	p, err := d.policies.Push(r.Context(), name, wasm, config)
	if err != nil {
		return nil, err
	}
	return map[string]any{"pushed": p.Name, "sha256": p.SHA256, "note": "validated by the daemon before it runs; see /status"}, nil
}

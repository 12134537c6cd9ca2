package daemon

import (
	"context"
	"errors"
	"sync"
	"time"

	"replayd/mixer"
	"replayd/mixer/policystore"
)

// watchPolicies follows the policy store's active pointer: each new module is
// fetched, validated by the host (compile, exports, ABI, a dry run on the
// mixer's current statistics) and swapped in between two batches. A module
// that fails validation is refused and the running policy continues.
func (d *Daemon) watchPolicies(ctx context.Context, wg *sync.WaitGroup) error {
	store, err := policystore.Open(ctx, d.conn.JS, policystore.DefaultObjectBucket, policystore.DefaultKVBucket)
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := store.Watch(ctx, func(p policystore.Pointer) { d.applyPolicy(ctx, store, p) })
		if err != nil && !errors.Is(err, context.Canceled) {
			d.log.Error("policy watch stopped", "err", err)
		}
	}()
	return nil
}

func (d *Daemon) applyPolicy(ctx context.Context, store *policystore.Store, p policystore.Pointer) {
	cur := d.mix.Policy()
	if cur != nil && cur.ModuleHash() == p.SHA256 && len(p.Config) == 0 && cur.Hash() == cur.ModuleHash() {
		return // already running (e.g. the pointer seen at start)
	}
	start := time.Now()
	wasm, err := store.Fetch(ctx, p)
	var pol *mixer.Policy
	if err == nil {
		pol, err = d.host.Load(ctx, p.Name, wasm, mixer.LoadOptions{Config: p.Config, Stats: d.mix.DryRunInput()})
	}
	if err != nil {
		d.metrics.PolicyFailures.Inc()
		keep := "none"
		if cur != nil {
			keep = cur.Name()
		}
		d.log.Error("policy refused; the running policy continues", "policy", p.Name, "sha256", p.SHA256, "running", keep, "err", err)
		return
	}
	if cur != nil && pol.Hash() == cur.Hash() {
		pol.Close(ctx)
		return
	}
	d.mix.Swap(pol)
	d.metrics.PolicySwaps.Inc()
	d.mu.Lock()
	step := d.state.Step
	d.mu.Unlock()
	d.recordPolicy(pol, step)
	d.log.Info("policy swapped", "policy", p.Name, "hash", pol.Hash(), "validated_in", time.Since(start))
}

package daemon

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"replayd/ingest"
	"replayd/mixer"
	"replayd/mixer/policystore"
	"replayd/policies"
)

// TestLivePolicySwap pushes policies to the store while the daemon trains:
// hostile modules are refused and training continues on the running policy;
// a valid one takes over between two batches.
func TestLivePolicySwap(t *testing.T) {
	data := subsetData(t, map[string]int{"finance_sft/fpb_sentiment_train.jsonl": 300, "finance_raw/reuters21578_train.jsonl": 40})
	ds, err := ScanData(data, "fin", "gen")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, baseCheckpoint(t, ds), ds)
	cfg.Eval.Suites = nil
	cfg.Train.MaxSteps = 0 // until the test stops it: validation of each pushed module takes a while
	cfg.Mixer.PolicyTimeout = 100 * time.Millisecond
	cfg.HTTP.Addr, cfg.HTTP.Token = "127.0.0.1:0", "op-token"

	var mu sync.Mutex
	var names []string
	natsURL, httpAddr := make(chan string, 1), make(chan string, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	log, lv := quietLog()
	go func() {
		done <- Run(runCtx, cfg, RunOptions{
			SeedData: SeedFromData(ds, 0, nil),
			Ready:    func(addr, url string) { httpAddr <- addr; natsURL <- url },
			OnStep: func(step int, b *mixer.Batch) {
				mu.Lock()
				names = append(names, b.PolicyName)
				mu.Unlock()
			},
		}, log, lv)
	}()
	var url string
	select {
	case url = <-natsURL:
	case err := <-done:
		t.Fatalf("daemon ended: %v", err)
	}
	conn, err := ingest.Connect(ctx, ingest.NATSOptions{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	store, err := policystore.Open(ctx, conn.JS, policystore.DefaultObjectBucket, policystore.DefaultKVBucket)
	if err != nil {
		t.Fatal(err)
	}
	steps := func() int { mu.Lock(); defer mu.Unlock(); return len(names) }
	waitSteps := func(n int) {
		for steps() < n {
			select {
			case err := <-done:
				t.Fatalf("daemon ended: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitSteps(3)
	hostiles := []struct{ module, config string }{
		{"loop", ""}, {"trap", ""}, {"membomb", ""}, {"noexport", ""}, {"badabi", ""},
		{"outofrange", "nan"}, {"outofrange", "sum"},
	}
	for _, h := range hostiles {
		wasm, err := os.ReadFile("../policies/testdata/hostile/" + h.module + ".wasm")
		if err != nil {
			t.Fatal(err)
		}
		var config []byte
		if h.config != "" {
			config = []byte(h.config)
		}
		if _, err := store.Push(ctx, h.module, wasm, config); err != nil {
			t.Fatal(err)
		}
		n := steps()
		waitSteps(n + 2) // training goes on
	}
	// The valid policy arrives over HTTP, which needs the operator token.
	sft, err := policies.Builtin("sft-only")
	if err != nil {
		t.Fatal(err)
	}
	api := "http://" + <-httpAddr + "/api/policy?name=sft-only"
	for _, c := range []struct {
		token  string
		status int
	}{{"", 401}, {"wrong", 401}, {"op-token", 200}} {
		req, _ := http.NewRequest("POST", api, bytes.NewReader(sft))
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Fatalf("POST /api/policy with token %q: %d, want %d", c.token, resp.StatusCode, c.status)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		last := names[len(names)-1]
		mu.Unlock()
		if last == "sft-only" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sft-only never took over")
		}
		waitSteps(steps() + 1)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Before the swap every batch is joint-replay; after it, sft-only; no
	// hostile module ever produced a batch.
	swapped := false
	for i, n := range names {
		switch {
		case n == "sft-only":
			swapped = true
		case n == "joint-replay" && !swapped:
		default:
			t.Fatalf("batch %d from %q (swapped=%v)", i, n, swapped)
		}
	}
}

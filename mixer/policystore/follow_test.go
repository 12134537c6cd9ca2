package policystore

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"replayd/ingest"
	"replayd/mixer"
	"replayd/policies"
)

// TestFollow: a daemon-side Follow swaps the mixer to each pushed policy,
// refuses a hostile one (the mixer keeps going on its policy) and follows
// a rollback.
func TestFollow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js := startJS(t)
	st, err := Open(ctx, js, DefaultObjectBucket, DefaultKVBucket)
	if err != nil {
		t.Fatal(err)
	}
	host, err := mixer.NewHost(ctx, mixer.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close(context.Background())
	builtin := func(name string) []byte {
		b, err := policies.Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	jr, err := host.Load(ctx, "joint-replay", builtin("joint-replay"), mixer.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	log := &mixer.MemLog{}
	m, err := mixer.New(mixer.Config{B: 2, T: 64, Seed: 1}, log, jr)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() {
		done <- st.Follow(fctx, host, m, nil, func(p Pointer, err error) { errs <- err })
	}()

	seq := 0
	feed := func() {
		var ss []ingest.Sample
		for b := range ingest.NumBuckets {
			for range 4 {
				seq++
				s := ingest.Sample{ID: fmt.Sprint(seq), Bucket: ingest.Bucket(b), Kind: ingest.Kind(b / 2),
					Tokens: make([]int32, 10+seq%20)}
				ss = append(ss, log.Append(s))
			}
		}
		if err := m.Add(ss); err != nil {
			t.Fatal(err)
		}
	}
	// waitFor draws batches until one comes from the named policy.
	waitFor := func(name string) {
		t.Helper()
		for {
			feed()
			b, err := m.Next(ctx)
			if err != nil {
				t.Fatalf("waiting for %s: %v", name, err)
			}
			if b.PolicyName == name {
				return
			}
		}
	}
	if _, err := st.Push(ctx, "dapt-only", builtin("dapt-only"), nil); err != nil {
		t.Fatal(err)
	}
	waitFor("dapt-only")

	trap, err := os.ReadFile("../../policies/testdata/hostile/trap.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Push(ctx, "trap", trap, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; !strings.Contains(err.Error(), "refused trap") {
		t.Fatalf("error %v, want the trap refused", err)
	}
	if p := m.Policy(); p.Name() != "dapt-only" {
		t.Fatalf("mixer on %s after a refused push", p.Name())
	}
	feed()
	if b, err := m.Next(ctx); err != nil || b.PolicyName != "dapt-only" {
		t.Fatalf("after the refused push: %v, %v", b.PolicyName, err)
	}

	if _, err := st.Push(ctx, "sft-only", builtin("sft-only"), []byte(`{"dapt_keep":1}`)); err != nil {
		t.Fatal(err)
	}
	waitFor("sft-only")
	// History dapt-only, trap, sft-only: rollback pops sft-only; the trap
	// is active again in the store, and refused again by the daemon.
	if _, err := st.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; !strings.Contains(err.Error(), "refused trap") {
		t.Fatalf("error %v, want the trap refused", err)
	}
	if _, err := st.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor("dapt-only")
	stop()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Follow returned %v", err)
	}
}

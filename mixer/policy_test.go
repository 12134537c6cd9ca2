package mixer

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"replayd/ingest"
	"replayd/policies"
	"replayd/policies/abi"
)

// TestHostileRefusedAtLoad: every hostile module is refused with an error
// that says what is wrong, and the host keeps working afterwards.
func TestHostileRefusedAtLoad(t *testing.T) {
	ctx := testCtx(t)
	// The memory bomb must meet the 32 MiB cap, not the deadline: it gets
	// a long one; the loop a short one.
	h := newHost(t, HostConfig{CallTimeout: 10 * time.Second, MemoryLimitPages: 512})
	hShort := newHost(t, HostConfig{CallTimeout: 300 * time.Millisecond, MemoryLimitPages: 512})
	cases := []struct {
		module, config, want string
	}{
		{"loop", "", "timed out"},
		{"membomb", "", "out of memory"},
		{"trap", "", "nil pointer dereference"},
		{"noexport", "", `missing export "mix"`},
		{"badabi", "", "abi_version 99"},
		{"outofrange", "bucket", "unknown bucket 7"},
		{"outofrange", "nan", "weight NaN out of range"},
		{"outofrange", "negative", "weight -1 out of range"},
		{"outofrange", "huge", "replay weight 1e+09 out of range"},
		{"outofrange", "keep", "keep = 2"},
		{"outofrange", "short", "decide answered 756 bytes for 64 samples"},
		{"outofrange", "wild", "outside guest memory"},
		{"outofrange", "sum", "sum to 0.5"},
		{"outofrange", "negmix", "proportion 0 = -0.5"},
		{"outofrange", "mixlen", "mix output is 16 bytes"},
		{"flaky", `{"fail_at_step":0,"how":"nan"}`, "weight NaN"},
		{"joint-replay", `{"dapt_keep":2}`, "init refused its config"},
	}
	for _, c := range cases {
		t.Run(c.module+"/"+c.config, func(t *testing.T) {
			var wasm []byte
			if c.module == "joint-replay" {
				wasm, _ = policies.Builtin(c.module)
			} else {
				wasm = hostileWasm(t, c.module)
			}
			host := h
			if c.module == "loop" {
				host = hShort
			}
			p, err := host.Load(ctx, c.module, wasm, LoadOptions{Config: []byte(c.config)})
			if err == nil {
				p.Close(ctx)
				t.Fatalf("%s loaded", c.module)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
	// The host still loads and runs a good policy.
	p := loadBuiltin(t, h, "joint-replay", "")
	if _, err := p.Mix(ctx, syntheticStats()); err != nil {
		t.Fatal(err)
	}
}

// TestFailingPolicyIsReplaced: a policy that passes the dry run and then
// traps, loops or answers NaN while running is replaced by the last good
// one; the error is reported and batches keep flowing, each from one
// policy.
func TestFailingPolicyIsReplaced(t *testing.T) {
	for _, how := range []string{"trap", "loop", "nan"} {
		t.Run(how, func(t *testing.T) {
			ctx := testCtx(t)
			h := newHost(t, HostConfig{CallTimeout: 300 * time.Millisecond})
			good := loadBuiltin(t, h, "joint-replay", "")
			bad, err := h.Load(ctx, "flaky", hostileWasm(t, "flaky"), LoadOptions{
				Config: []byte(fmt.Sprintf(`{"fail_at_step":3,"how":%q}`, how)),
				Stats:  &abi.MixInput{}, // step 0, as Mixer.DryRunInput says at start
			})
			if err != nil {
				t.Fatal(err)
			}
			l := newMemLog()
			var reported []string
			m, _ := New(Config{B: 2, T: 64, Seed: 5, OnPolicyError: func(name, hash string, err error) {
				reported = append(reported, name+": "+err.Error())
			}}, l, good)
			m.Swap(bad)
			var hashes []string
			for i := range 6 {
				m.Add(l.mixed(8, 5, 40))
				b, err := m.Next(ctx)
				if err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
				checkBatch(t, l, b)
				hashes = append(hashes, b.PolicyName)
				if b.Step == 3 && len(b.Stats.PolicyErrors) != 1 {
					t.Errorf("batch 3: policy errors %v", b.Stats.PolicyErrors)
				}
			}
			want := []string{"flaky", "flaky", "flaky", "joint-replay", "joint-replay", "joint-replay"}
			if fmt.Sprint(hashes) != fmt.Sprint(want) {
				t.Errorf("policies per batch %v, want %v", hashes, want)
			}
			if len(reported) != 1 || !strings.HasPrefix(reported[0], "flaky: ") {
				t.Errorf("reported %q", reported)
			}
		})
	}
}

// TestSwapUnderLoad swaps between dapt-only and sft-only 100 times while
// another goroutine draws batches: no error, every swap takes effect, and
// no batch mixes the two (a dapt-only batch holds only dapt/domain fresh
// samples, an sft-only one only sft/domain).
func TestSwapUnderLoad(t *testing.T) {
	ctx := testCtx(t)
	h := newHost(t, HostConfig{})
	pd := loadBuiltin(t, h, "dapt-only", "")
	ps := loadBuiltin(t, h, "sft-only", "")
	want := map[string]ingest.Bucket{pd.Hash(): ingest.BucketDAPTDomain, ps.Hash(): ingest.BucketSFTDomain}
	l := newMemLog()
	m, _ := New(Config{B: 2, T: 64, Seed: 11}, l, pd)

	drawn := make(chan struct{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var batches []*Batch
	var drawErr error
	wg.Go(func() {
		for {
			if err := m.Add(l.mixed(6, 4, 30)); err != nil {
				drawErr = err
				return
			}
			b, err := m.Next(ctx)
			if err != nil {
				drawErr = err
				return
			}
			batches = append(batches, b)
			select {
			case drawn <- struct{}{}:
			case <-stop:
				return
			}
		}
	})
	for i := range 100 {
		if i%2 == 0 {
			m.Swap(ps)
		} else {
			m.Swap(pd)
		}
		// Two batches: the second one started after the swap.
		for range 2 {
			select {
			case <-drawn:
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
	}
	close(stop)
	wg.Wait()
	if drawErr != nil {
		t.Fatal(drawErr)
	}
	changes := 0
	prev := pd.Hash()
	for i, b := range batches {
		bk, ok := want[b.PolicyHash]
		if !ok {
			t.Fatalf("batch %d: unknown policy %s", i, b.PolicyHash)
		}
		if len(b.Samples) == 0 {
			t.Fatalf("batch %d is empty", i)
		}
		for _, r := range b.Samples {
			if r.Replay || r.Bucket != bk {
				t.Fatalf("batch %d by %s holds %+v", i, b.PolicyName, r)
			}
		}
		if b.PolicyHash != prev {
			changes++
		}
		prev = b.PolicyHash
	}
	if changes != 100 {
		t.Errorf("%d policy changes over %d batches, want 100", changes, len(batches))
	}
}

// TestRealisedProportions: over 10,000 drawn samples the share of each slot
// is within 2 points of what mix asked for, and joint-replay's down-sampling
// keeps dapt_keep of dapt/domain within a binomial tolerance.
func TestRealisedProportions(t *testing.T) {
	ctx := testCtx(t)
	h := newHost(t, HostConfig{})
	asked := [NumSlots]float64{0.1, 0.05, 0.15, 0.1, 0.2, 0.1, 0.2, 0.1}
	cfg := fmt.Sprintf(`{"dapt_keep":1,"general_fresh":true,"mix":[%v,%v,%v,%v,%v,%v,%v,%v]}`,
		asked[0], asked[1], asked[2], asked[3], asked[4], asked[5], asked[6], asked[7])
	l := newMemLog()
	m, _ := New(Config{B: 8, T: 256, Seed: 21}, l, loadBuiltin(t, h, "joint-replay", cfg))
	m.Preload(l.mixed(200, 4, 40))
	m.Add(l.mixed(4000, 4, 40))
	var counts [NumSlots]int
	total := 0
	for total < 10000 {
		b, err := m.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if b.Stats.Fallbacks > 0 {
			t.Fatalf("batch %d fell back %d times: a slot ran dry, the test needs more data", b.Step, b.Stats.Fallbacks)
		}
		for _, r := range b.Samples {
			counts[SlotOf(r.Bucket, r.Replay)]++
			total++
		}
	}
	for s := range NumSlots {
		got := float64(counts[s]) / float64(total)
		if math.Abs(got-asked[s]) > 0.02 {
			t.Errorf("slot %s: realised %.4f, asked %.4f", SlotName(s), got, asked[s])
		}
	}

	// Down-sampling: 10,000 fresh dapt/domain samples at dapt_keep 0.3.
	const n, p = 10000, 0.3
	m2, _ := New(Config{B: 2, T: 64, Seed: 22}, l, loadBuiltin(t, h, "joint-replay", `{"dapt_keep":0.3}`))
	m2.Add(l.gen(ingest.BucketDAPTDomain, n, 4, 20))
	b, err := m2.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kept := float64(n-b.Stats.Dropped) / n
	tol := 4 * math.Sqrt(p*(1-p)/n)
	if math.Abs(kept-p) > tol {
		t.Errorf("kept %.4f of dapt/domain, want %.2f ± %.4f", kept, p, tol)
	}
	if b.Stats.Decided != n {
		t.Errorf("decided %d, want %d", b.Stats.Decided, n)
	}
}

// TestLoadUsesGivenStats: the dry run runs on the statistics given, so a
// policy that would fail on the live stream is refused before the swap.
func TestLoadUsesGivenStats(t *testing.T) {
	ctx := testCtx(t)
	h := newHost(t, HostConfig{})
	wasm := hostileWasm(t, "flaky")
	cfg := []byte(`{"fail_at_step":500,"how":"nan"}`)
	if _, err := h.Load(ctx, "flaky", wasm, LoadOptions{Config: cfg, Stats: &abi.MixInput{Step: 10}}); err != nil {
		t.Fatalf("refused at step 10: %v", err)
	}
	if _, err := h.Load(ctx, "flaky", wasm, LoadOptions{Config: cfg, Stats: &abi.MixInput{Step: 600}}); err == nil {
		t.Fatal("accepted at step 600")
	}
}

// TestSandbox: a module probing its surroundings at init finds no
// filesystem, environment, arguments or network, a fake clock (wazero's
// fixed epoch, 2022) and a random source that is a function of the host
// seed.
func TestSandbox(t *testing.T) {
	ctx := testCtx(t)
	wasm := hostileWasm(t, "probe")
	probe := func(seed uint64) [7]float32 {
		h := newHost(t, HostConfig{Seed: seed})
		p, err := h.Load(ctx, "probe", wasm, LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		metas := make([]abi.SampleMeta, 7)
		for i := range metas {
			metas[i].Seq = uint64(i)
		}
		out := make([]abi.Decision, len(metas))
		if err := p.Decide(ctx, abi.DecideHeader{}, metas, out); err != nil {
			t.Fatal(err)
		}
		var seen [7]float32
		for i, d := range out {
			seen[i] = d.Weight
		}
		return seen
	}
	a, a2, b := probe(1), probe(1), probe(2)
	want := []struct {
		seq  int
		what string
		v    float32
	}{{1, "filesystem readable", 0}, {2, "environment variables", 0}, {3, "year - 2000", 22}, {4, "arguments", 0}, {6, "network dial worked", 0}}
	for _, w := range want {
		if a[w.seq] != w.v {
			t.Errorf("%s: %v, want %v", w.what, a[w.seq], w.v)
		}
	}
	if a[5] != a2[5] {
		t.Errorf("same seed, different random: %v vs %v", a[5], a2[5])
	}
	if a[5] == b[5] {
		t.Errorf("seeds 1 and 2 gave the same random %v", a[5])
	}
}

// TestSwapReleasesDisplacedPolicy: a policy that is neither current nor
// the fallback gives its instance back, and still works if swapped in
// again (it re-instantiates).
func TestSwapReleasesDisplacedPolicy(t *testing.T) {
	ctx := testCtx(t)
	h := newHost(t, HostConfig{})
	a := loadBuiltin(t, h, "joint-replay", "")
	b := loadBuiltin(t, h, "sft-only", "")
	c := loadBuiltin(t, h, "dapt-only", "")
	l := newMemLog()
	m, _ := New(Config{B: 2, T: 64, Seed: 8}, l, a)
	next := func(want *Policy) {
		t.Helper()
		m.Add(l.mixed(4, 5, 30))
		bt, err := m.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if bt.PolicyHash != want.Hash() {
			t.Fatalf("batch by %s, want %s", bt.PolicyName, want.Name())
		}
	}
	next(a)
	m.Swap(b)
	next(b)
	m.Swap(c)
	next(c)
	a.mu.Lock()
	released := a.mod == nil
	a.mu.Unlock()
	if !released {
		t.Error("displaced policy still holds its instance")
	}
	m.Swap(a)
	next(a)
}

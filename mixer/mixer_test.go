package mixer

import (
	"bytes"
	"context"
	"errors"
	"math"
	"reflect"
	"testing"

	"replayd/ingest"
)

// TestPacker packs documents of various lengths directly and checks that
// every target of every document lands exactly once (long documents split
// with one token of overlap) and what the efficiency is.
func TestPacker(t *testing.T) {
	cases := []struct {
		name     string
		b, t     int
		docs     []int // token counts
		wantEff  float64
		wantRows []int // free positions per row after packing
		minPiece int   // 0: the default min(16, T)
	}{
		{"exact rows", 2, 8, []int{9, 9}, 1, []int{0, 0}, 0},
		{"first fit", 2, 8, []int{5, 5, 4}, 11.0 / 16, []int{0, 5}, 0},
		{"split long", 2, 8, []int{17}, 1, []int{0, 0}, 0},
		{"split skips gaps below minPiece", 3, 8, []int{5, 12}, 15.0 / 24, []int{4, 0, 5}, 0},
		{"split fills a usable gap", 2, 32, []int{10, 50}, 58.0 / 64, []int{0, 6}, 0},
		{"small gap stays padding", 2, 32, []int{30, 33}, (29.0 + 32) / 64, []int{3, 0}, 0},
		{"README figure", 3, 16, []int{7, 10, 20, 5}, 38.0 / 48, []int{1, 0, 9}, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mp := c.minPiece
			if mp == 0 {
				mp = min(16, c.t)
			}
			pk := newPacker(c.b, c.t, mp)
			seen := map[[2]int32]int{}
			for d, n := range c.docs {
				toks := make([]int32, n)
				mask := make([]uint8, n)
				for i := range toks {
					toks[i] = int32(d*1000 + i)
					mask[i] = 1
				}
				need := n - 1
				if !pk.fits(need) {
					// Only the split case's tail could hit this; the cases
					// are sized to fit.
					t.Fatalf("doc %d (%d tokens) does not fit", d, n)
				}
				pk.place(toks, mask, 2, 0, int32(d))
			}
			b := pk.b
			for i, d := range b.DocIDs {
				if d < 0 {
					continue
				}
				in, tg := b.Tokens[i], b.Targets[i]
				if tg != in+1 || b.Weights[i] != 2 {
					t.Fatalf("pos %d: input %d target %d weight %v", i, in, tg, b.Weights[i])
				}
				seen[[2]int32{d, tg}]++
			}
			for d, n := range c.docs {
				for j := 1; j < n; j++ {
					if got := seen[[2]int32{int32(d), int32(d*1000 + j)}]; got != 1 {
						t.Errorf("doc %d target %d seen %d times", d, j, got)
					}
				}
			}
			if eff := float64(pk.used) / float64(c.b*c.t); math.Abs(eff-c.wantEff) > 1e-9 {
				t.Errorf("efficiency %v, want %v", eff, c.wantEff)
			}
			if !reflect.DeepEqual(pk.free, c.wantRows) {
				t.Errorf("free per row %v, want %v", pk.free, c.wantRows)
			}
		})
	}
}

// drain draws batches until every fresh sample handed in is packed or
// dropped (Waiting() == 0) and returns them.
func drain(t *testing.T, ctx context.Context, m *Mixer, l *memLog, max int) []*Batch {
	t.Helper()
	var out []*Batch
	for m.Waiting() > 0 {
		if len(out) == max {
			t.Fatalf("still %d samples waiting after %d batches", m.Waiting(), max)
		}
		b, err := m.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkBatch(t, l, b)
		out = append(out, b)
	}
	return out
}

// TestExactlyOnce: every fresh sample is either dropped by the policy or
// packed in exactly one batch, whole (all its targets), and the replayed
// ones are older samples of the replay pools.
func TestExactlyOnce(t *testing.T) {
	ctx := testCtx(t)
	h := newHost(t, HostConfig{})
	p := loadBuiltin(t, h, "joint-replay", "")
	l := newMemLog()
	m, err := New(Config{B: 4, T: 128, Seed: 1}, l, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Preload(l.gen(ingest.BucketDAPTGeneral, 50, 10, 60)); err != nil {
		t.Fatal(err)
	}
	in := l.mixed(300, 2, 300)
	// Duplicates (a re-read after a restart) are ignored.
	if err := m.Add(in[:600]); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(in[500:]); err != nil {
		t.Fatal(err)
	}
	batches := drain(t, ctx, m, l, 1000)
	fresh := map[uint64]int{}
	tokens := map[uint64]int{}
	dropped := 0
	for _, b := range batches {
		dropped += b.Stats.Dropped
		if b.PolicyHash != p.Hash() {
			t.Fatalf("batch %d: policy %s", b.Step, b.PolicyHash)
		}
		for _, r := range b.Samples {
			if !r.Replay {
				fresh[r.Seq]++
				tokens[r.Seq] += r.Tokens
			}
		}
	}
	byBucket := map[ingest.Bucket]int{}
	for _, s := range in {
		n := fresh[s.Seq]
		if n > 1 {
			t.Fatalf("seq %d packed %d times", s.Seq, n)
		}
		if n == 1 {
			byBucket[s.Bucket]++
			if tokens[s.Seq] != len(s.Tokens)-1 {
				t.Fatalf("seq %d: %d of %d targets packed", s.Seq, tokens[s.Seq], len(s.Tokens)-1)
			}
		}
	}
	// joint-replay: all sft/domain trained, dapt/domain down-sampled,
	// general data replay-only.
	if byBucket[ingest.BucketSFTDomain] != 300 || byBucket[ingest.BucketDAPTGeneral] != 0 || byBucket[ingest.BucketSFTGeneral] != 0 {
		t.Errorf("fresh samples per bucket %v", byBucket)
	}
	if got := byBucket[ingest.BucketDAPTDomain] + dropped; got != 300 {
		t.Errorf("dapt/domain: %d trained + %d dropped != 300", byBucket[ingest.BucketDAPTDomain], dropped)
	}
	if m.NextFreshSeq() != in[len(in)-1].Seq+1 {
		t.Errorf("NextFreshSeq %d, want %d", m.NextFreshSeq(), in[len(in)-1].Seq+1)
	}
}

// TestRestoreIsDeterministic: N batches in one go equal N/2 batches, State,
// a new mixer restored from it, and N/2 more — with samples still queued at
// checkpoint time, re-read from the log.
func TestRestoreIsDeterministic(t *testing.T) {
	ctx := testCtx(t)
	h := newHost(t, HostConfig{})
	const n = 16
	l := newMemLog()
	pre := l.gen(ingest.BucketSFTGeneral, 40, 10, 80)
	feed := make([][]ingest.Sample, n)
	for i := range feed {
		feed[i] = l.mixed(12, 5, 150)
	}
	cfg := Config{B: 4, T: 64, Seed: 99, ReplayRecency: 1}
	run := func(m *Mixer, from, to int) []*Batch {
		var out []*Batch
		for i := from; i < to; i++ {
			if err := m.Add(feed[i]); err != nil {
				t.Fatal(err)
			}
			b, err := m.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		return out
	}
	m1, _ := New(cfg, l, loadBuiltin(t, h, "joint-replay", `{"dapt_keep":0.5}`))
	m1.Preload(pre)
	want := run(m1, 0, n)

	m2, _ := New(cfg, l, loadBuiltin(t, h, "joint-replay", `{"dapt_keep":0.5}`))
	m2.Preload(pre)
	got := run(m2, 0, n/2)
	if m2.Waiting() == 0 {
		t.Fatal("nothing queued at the checkpoint: the test would not exercise re-reads")
	}
	st, err := m2.State()
	if err != nil {
		t.Fatal(err)
	}
	m3, _ := New(cfg, newMemLog(), loadBuiltin(t, h, "joint-replay", `{"dapt_keep":0.5}`))
	if err := m3.Restore(ctx, st, l); err != nil {
		t.Fatal(err)
	}
	if m3.NextFreshSeq() != m2.NextFreshSeq() {
		t.Fatalf("NextFreshSeq %d after restore, %d before", m3.NextFreshSeq(), m2.NextFreshSeq())
	}
	got = append(got, run(m3, n/2, n)...)
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("batch %d differs after restore:\n got samples %v\nwant samples %v", i, got[i].Samples, want[i].Samples)
		}
	}
	st2, _ := m3.State()
	st1, _ := m1.State()
	if !bytes.Equal(st1, st2) {
		t.Error("final states differ")
	}
}

// TestNextWaitsForData: with nothing at all, Next blocks until Add (or ctx
// ends); it does not spin or return an empty batch.
func TestNextWaitsForData(t *testing.T) {
	ctx := testCtx(t)
	h := newHost(t, HostConfig{})
	l := newMemLog()
	m, _ := New(Config{B: 2, T: 32, Seed: 3}, l, loadBuiltin(t, h, "joint-replay", ""))

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Next(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next on a canceled ctx: %v", err)
	}
	done := make(chan *Batch)
	go func() {
		b, err := m.Next(ctx)
		if err != nil {
			t.Error(err)
		}
		done <- b
	}()
	// Only general data (replay-only under joint-replay) is enough to
	// train on: the stream never needs fresh domain data to keep going.
	m.Add(l.gen(ingest.BucketSFTGeneral, 5, 10, 20))
	b := <-done
	if b == nil || len(b.Samples) == 0 {
		t.Fatal("no batch after Add")
	}
	for _, r := range b.Samples {
		if !r.Replay || r.Bucket != ingest.BucketSFTGeneral {
			t.Errorf("sample %+v: want sft/general replay", r)
		}
	}
}

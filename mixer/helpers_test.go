package mixer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"replayd/ingest"
	"replayd/policies"
)

// testCache shares compiled code between the tests' hosts: compiling a
// 3 MB Go guest takes about a second.
var testCache = wazero.NewCompilationCache()

func TestMain(m *testing.M) {
	code := m.Run()
	testCache.Close(context.Background())
	os.Exit(code)
}

func newHost(t testing.TB, cfg HostConfig) *Host {
	t.Helper()
	cfg.Cache = testCache
	h, err := NewHost(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

func loadBuiltin(t testing.TB, h *Host, name, config string) *Policy {
	t.Helper()
	wasm, err := policies.Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := h.Load(context.Background(), name, wasm, LoadOptions{Config: []byte(config)})
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return p
}

func hostileWasm(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "policies", "testdata", "hostile", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// memLog is an in-memory Log: the samples by sequence, as the JetStream
// log would return them.
type memLog struct {
	mu   sync.Mutex
	seqs map[uint64]ingest.Sample
	next uint64
	gets int
}

func newMemLog() *memLog { return &memLog{seqs: map[uint64]ingest.Sample{}, next: 1} }

func (l *memLog) Get(_ context.Context, seq uint64) (ingest.Sample, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gets++
	s, ok := l.seqs[seq]
	if !ok {
		return s, fmt.Errorf("memlog: no seq %d", seq)
	}
	return s, nil
}

// gen appends n samples of bucket b with token counts in [minTok, maxTok]
// (a deterministic function of the seq) and returns them.
func (l *memLog) gen(b ingest.Bucket, n, minTok, maxTok int) []ingest.Sample {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]ingest.Sample, n)
	for i := range out {
		seq := l.next
		l.next++
		ntok := minTok + int(mix64(7, seq)%uint64(maxTok-minTok+1))
		s := ingest.Sample{
			ID: fmt.Sprintf("s%d", seq), Seq: seq, Bucket: b,
			Kind:   ingest.KindDAPT,
			Domain: "fin",
			Tokens: make([]int32, ntok), LossMask: make([]uint8, ntok),
			Bytes: ntok * 4,
		}
		if b == ingest.BucketDAPTGeneral || b == ingest.BucketSFTGeneral {
			s.Domain = "gen"
		}
		if b == ingest.BucketSFTDomain || b == ingest.BucketSFTGeneral {
			s.Kind = ingest.KindSFT
			s.Task = "qa"
		}
		for j := range s.Tokens {
			// Token j of seq: unique enough to tell documents apart.
			s.Tokens[j] = int32(seq*1000 + uint64(j))
			s.LossMask[j] = 1
			if s.Kind == ingest.KindSFT && j < ntok/3 {
				s.LossMask[j] = 0 // the instruction part
			}
		}
		l.seqs[seq] = s
		out[i] = s
	}
	return out
}

// mixed returns n samples per bucket, interleaved in log order.
func (l *memLog) mixed(n, minTok, maxTok int) []ingest.Sample {
	var out []ingest.Sample
	for range n {
		for b := range ingest.NumBuckets {
			out = append(out, l.gen(ingest.Bucket(b), 1, minTok, maxTok)...)
		}
	}
	return out
}

func testCtx(t testing.TB) context.Context {
	t.Helper()
	// A generous bound so a hung test fails instead of stalling the suite;
	// nothing asserts on time.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// checkBatch verifies a batch against the log: every position's input and
// target are consecutive tokens of its document, weights are the mask of
// the target (times w in wantW when given), positions restart per piece,
// padding is marked, and Stats agree with the positions.
func checkBatch(t testing.TB, l *memLog, b *Batch) {
	t.Helper()
	used := 0
	for r := range b.B {
		prevDoc, prevPos := int32(-2), int32(-1)
		for c := range b.T {
			i := r*b.T + c
			d := b.DocIDs[i]
			if d < 0 {
				if b.Targets[i] != -1 || b.Weights[i] != 0 || b.Buckets[i] != PadSlot {
					t.Fatalf("step %d pos %d: padding not marked", b.Step, i)
				}
				prevDoc = -1
				continue
			}
			used++
			ref := b.Samples[d]
			s, err := l.Get(context.Background(), ref.Seq)
			if err != nil {
				t.Fatal(err)
			}
			if d != prevDoc && b.Positions[i] != 0 {
				t.Fatalf("step %d pos %d: piece starts at position %d", b.Step, i, b.Positions[i])
			}
			if d == prevDoc && b.Positions[i] != prevPos+1 {
				t.Fatalf("step %d pos %d: position %d after %d", b.Step, i, b.Positions[i], prevPos)
			}
			j := int(b.Tokens[i] - int32(ref.Seq*1000))
			if j < 0 || j+1 >= len(s.Tokens) || b.Targets[i] != s.Tokens[j+1] {
				t.Fatalf("step %d pos %d: input %d target %d are not consecutive tokens of seq %d", b.Step, i, b.Tokens[i], b.Targets[i], ref.Seq)
			}
			if got := b.Buckets[i]; int(got) != SlotOf(ref.Bucket, ref.Replay) {
				t.Fatalf("step %d pos %d: slot %d, sample is in slot %d", b.Step, i, got, SlotOf(ref.Bucket, ref.Replay))
			}
			if s.LossMask[j+1] == 0 && b.Weights[i] != 0 {
				t.Fatalf("step %d pos %d: weight %v on a masked target", b.Step, i, b.Weights[i])
			}
			if s.LossMask[j+1] == 1 && b.Weights[i] <= 0 {
				t.Fatalf("step %d pos %d: weight %v on a target", b.Step, i, b.Weights[i])
			}
			prevDoc, prevPos = d, b.Positions[i]
		}
	}
	if want := float64(used) / float64(b.B*b.T); b.Stats.Efficiency != want {
		t.Fatalf("step %d: efficiency %v, positions say %v", b.Step, b.Stats.Efficiency, want)
	}
}

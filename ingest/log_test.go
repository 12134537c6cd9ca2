package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type wireCase struct {
	subject string
	data    string
	reason  Reason // "" = a valid sample
	bucket  Bucket
}

// logCases interleaves valid samples of every bucket with every class of
// bad input, and ends with a valid sample so a reader that reaches it has
// processed every reject.
func logCases() []wireCase {
	return []wireCase{
		{"replayd.ingest.dapt.fin", `{"id":"d1","text":"Profits rose 5 pct."}`, "", BucketDAPTDomain},
		{"replayd.ingest.dapt.fin", `{"id":"bad-json","text":`, ReasonInvalidJSON, 0},
		{"replayd.ingest.sft.fin", `{"id":"s1","instruction":"Sentiment?","input":"Loss widened.","output":"negative","task":"fpb"}`, "", BucketSFTDomain},
		{"replayd.ingest.dapt.fin", "{\"id\":\"bad-utf8\",\"text\":\"caf\xe9\"}", ReasonInvalidUTF8, 0},
		{"replayd.ingest.dapt.gen", `{"id":"g1","text":"The river flows north."}`, "", BucketDAPTGeneral},
		{"replayd.ingest.sft.fin", `{"id":"no-output","instruction":"x"}`, ReasonMissingField, 0},
		{"replayd.ingest.dapt.fin", `{"id":"big","text":"` + strings.Repeat("x", 5000) + `"}`, ReasonOversize, 0},
		{"replayd.ingest.sft.gen", `{"id":"g2","messages":[{"role":"user","content":"Hi?"},{"role":"assistant","content":"Hello."}]}`, "", BucketSFTGeneral},
		{"replayd.ingest.pretrain.fin", `{"id":"kind","text":"a"}`, ReasonUnknownKind, 0},
		{"replayd.ingest.dapt.fin", `{"id":"empty","text":" "}`, ReasonEmpty, 0},
		{"replayd.ingest.sft.gen", `{"id":"role","messages":[{"role":"user","content":"a"},{"role":"robot","content":"b"}]}`, ReasonBadRole, 0},
		{"replayd.ingest.dapt.med", `{"id":"dom","text":"a"}`, ReasonUnknownSubject, 0},
		{"replayd.ingest.dapt.fin", `{"id":"d2","text":"Bonds fell."}`, "", BucketDAPTDomain},
	}
}

func publishCases(t *testing.T, ctx context.Context, js jetstream.JetStream, cases []wireCase, idPrefix string) []uint64 {
	t.Helper()
	seqs := make([]uint64, len(cases))
	for i, c := range cases {
		m := nats.NewMsg(c.subject)
		m.Data = []byte(c.data)
		m.Header.Set(jetstream.MsgIDHeader, idPrefix+strconv.Itoa(i))
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatalf("publish case %d: %v", i, err)
		}
		seqs[i] = ack.Sequence
	}
	return seqs
}

// readUntil reads samples until one with sequence last is returned.
func readUntil(t *testing.T, ctx context.Context, r *Reader, last uint64) []Sample {
	t.Helper()
	var out []Sample
	for {
		s, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("next after %d samples: %v", len(out), err)
		}
		out = append(out, s)
		if s.Seq >= last {
			return out
		}
	}
}

func TestLogEndToEnd(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	ctx := testCtx(t, 90*time.Second)
	dir := t.TempDir()
	opts := StreamOptions{Limits: Limits{MaxBytes: 4096}}
	c := embedded(t, ctx, dir, 0)
	l, err := OpenLog(ctx, c, opts, byteEncoder{})
	if err != nil {
		t.Fatal(err)
	}
	cases := logCases()
	seqs := publishCases(t, ctx, c.JS, cases, "m")

	var rejections []Rejection
	r, err := l.Read(ctx, ReadOptions{Workers: 3, OnReject: func(x Rejection) { rejections = append(rejections, x) }})
	if err != nil {
		t.Fatal(err)
	}
	got := readUntil(t, ctx, r, seqs[len(seqs)-1])
	if r.Position() != seqs[len(seqs)-1] {
		t.Errorf("position %d, want %d", r.Position(), seqs[len(seqs)-1])
	}
	st := r.Stats()
	r.Close()
	if _, err := r.Next(ctx); !errors.Is(err, ErrReaderClosed) {
		t.Errorf("Next after Close: %v", err)
	}

	// Samples: exactly the valid cases, in order, with their sequences.
	var want []int
	wantRejects := map[uint64]wireCase{}
	for i, cs := range cases {
		if cs.reason == "" {
			want = append(want, i)
		} else {
			wantRejects[seqs[i]] = cs
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d samples, want %d", len(got), len(want))
	}
	for j, i := range want {
		s := got[j]
		var w struct{ ID string }
		if err := json.Unmarshal([]byte(cases[i].data), &w); err != nil {
			t.Fatal(err)
		}
		if s.Seq != seqs[i] || s.Bucket != cases[i].bucket || s.ID != w.ID || s.Bytes != len(cases[i].data) {
			t.Errorf("sample %d: seq %d bucket %v id %q bytes %d; want %d %v %q %d", j, s.Seq, s.Bucket, s.ID, s.Bytes, seqs[i], cases[i].bucket, w.ID, len(cases[i].data))
		}
		if len(s.Tokens) == 0 || len(s.Tokens) != len(s.LossMask) {
			t.Errorf("sample %d: %d tokens, %d mask", j, len(s.Tokens), len(s.LossMask))
		}
		ones := bytes.Count(s.LossMask, []byte{1})
		if s.Kind == KindSFT && (ones == 0 || ones == len(s.LossMask)) {
			t.Errorf("sample %d (SFT): mask has %d ones of %d; the prompt must be masked", j, ones, len(s.LossMask))
		}
		if s.Kind == KindDAPT && ones != len(s.LossMask) {
			t.Errorf("sample %d (DAPT): mask has %d ones of %d", j, ones, len(s.LossMask))
		}
		// Random access returns the same sample.
		g, err := l.Get(ctx, s.Seq)
		if err != nil || g.ID != s.ID || !slices.Equal(g.Tokens, s.Tokens) || g.Bucket != s.Bucket {
			t.Errorf("Get(%d) = %+v, %v", s.Seq, g.ID, err)
		}
	}
	if st.Samples != uint64(len(want)) || st.Messages != uint64(len(cases)) {
		t.Errorf("stats %+v", st)
	}

	// Every reject is in the dead-letter stream, in order, with its reason,
	// the original bytes and its source.
	if len(rejections) != len(wantRejects) {
		t.Fatalf("%d rejections, want %d", len(rejections), len(wantRejects))
	}
	dlq, err := c.JS.Stream(ctx, DefaultDLQName)
	if err != nil {
		t.Fatal(err)
	}
	for _, rj := range rejections {
		wc := wantRejects[rj.Seq]
		if rj.Reason != wc.reason {
			t.Errorf("seq %d: reason %q, want %q (%s)", rj.Seq, rj.Reason, wc.reason, rj.Detail)
		}
		m, err := dlq.GetLastMsgForSubject(ctx, DefaultDLQPrefix+"."+string(wc.reason))
		if err != nil {
			t.Errorf("dlq %s: %v", wc.reason, err)
			continue
		}
		if string(m.Data) != wc.data || m.Header.Get(HeaderSourceSeq) != strconv.FormatUint(rj.Seq, 10) ||
			m.Header.Get(HeaderSourceSubject) != wc.subject || m.Header.Get(HeaderReason) != string(wc.reason) ||
			m.Header.Get(HeaderDetail) == "" || m.Header.Get(jetstream.MsgIDHeader) != fmt.Sprintf("dlq-%d", rj.Seq) {
			t.Errorf("dlq %s: header %v data %q", wc.reason, m.Header, m.Data)
		}
		if _, err := l.Get(ctx, rj.Seq); !errors.Is(err, ErrNotSample) || ReasonOf(err) != wc.reason {
			t.Errorf("Get(%d) of a reject: %v", rj.Seq, err)
		}
	}
	dlqInfo, err := dlq.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dlqInfo.State.Msgs != uint64(len(wantRejects)) {
		t.Errorf("dlq holds %d messages, want %d", dlqInfo.State.Msgs, len(wantRejects))
	}

	// The index holds every sample by bucket, for replay.
	idx := l.Index()
	for b := Bucket(0); b < NumBuckets; b++ {
		var ws []uint64
		for _, i := range want {
			if cases[i].bucket == b {
				ws = append(ws, seqs[i])
			}
		}
		if gs := idx.Seqs(b, 0); !slices.Equal(gs, ws) {
			t.Errorf("index %v: %v, want %v", b, gs, ws)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	if s, ok := idx.Random(BucketDAPTDomain, seqs[len(seqs)-1], rng); !ok || s != seqs[0] {
		t.Errorf("Random older dapt/domain = %d, %v; want %d", s, ok, seqs[0])
	}
	pos := seqs[len(seqs)-1]

	// Restart the server on the same store: positions continue, and a
	// re-read from the start (a crash before the checkpoint) adds no
	// dead letters.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = embedded(t, ctx, dir, 0)
	defer c.Close()
	l, err = OpenLog(ctx, c, opts, byteEncoder{})
	if err != nil {
		t.Fatal(err)
	}
	if last, err := l.LastSeq(ctx); err != nil || last != pos {
		t.Fatalf("after restart LastSeq = %d, %v; want %d", last, err, pos)
	}
	more := publishCases(t, ctx, c.JS, []wireCase{
		{"replayd.ingest.sft.fin", `{"id":"s9","instruction":"a","output":"b"}`, "", BucketSFTDomain},
		{"replayd.ingest.dapt.gen", `{"id":"g9","text":"c"}`, "", BucketDAPTGeneral},
	}, "after-restart-")
	if more[0] != pos+1 {
		t.Fatalf("first sequence after restart %d, want %d", more[0], pos+1)
	}
	r, err = l.Read(ctx, ReadOptions{StartSeq: pos + 1})
	if err != nil {
		t.Fatal(err)
	}
	resumed := readUntil(t, ctx, r, more[1])
	r.Close()
	if len(resumed) != 2 || resumed[0].ID != "s9" || resumed[1].Seq != more[1] {
		t.Fatalf("resumed read: %+v", resumed)
	}
	r, err = l.Read(ctx, ReadOptions{StartSeq: 1, NoIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	all := readUntil(t, ctx, r, more[1])
	r.Close()
	if len(all) != len(want)+2 {
		t.Errorf("re-read %d samples, want %d", len(all), len(want)+2)
	}
	dlq, err = c.JS.Stream(ctx, DefaultDLQName)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := dlq.Info(ctx); err != nil || info.State.Msgs != uint64(len(wantRejects)) {
		t.Errorf("after re-read dlq holds %v messages (err %v), want %d (dlq-<seq> de-duplicates)", info.State.Msgs, err, len(wantRejects))
	}
	// BuildIndex over the history finds the same buckets without tokenizing.
	l2 := &Log{js: l.js, stream: l.stream, dlq: l.dlq, opts: l.opts, subjects: l.subjects, index: NewIndex()}
	n, err := l2.BuildIndex(ctx, 0, 0)
	if err != nil || n != len(want)+2 {
		t.Errorf("BuildIndex = %d, %v; want %d", n, err, len(want)+2)
	}
	if got := l2.Index().Count(BucketDAPTGeneral, 0); got != 2 {
		t.Errorf("BuildIndex dapt/general count %d, want 2", got)
	}
	c.Close()
	waitGoroutines(t, goroutines)
}

// TestReaderSurvivesServerRestart keeps one reader running on a client
// connected by URL while the server is stopped and restarted on the same
// port and store: the reader resumes with the next sequence, none skipped
// and none repeated.
func TestReaderSurvivesServerRestart(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	ctx := testCtx(t, 90*time.Second)
	dir := t.TempDir()
	port := freePort(t)
	srv := embedded(t, ctx, dir, port)
	client, err := Connect(ctx, NATSOptions{URL: srv.ClientURL(), ReconnectWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	l, err := OpenLog(ctx, client, StreamOptions{}, byteEncoder{})
	if err != nil {
		t.Fatal(err)
	}
	pub := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := client.JS.Publish(ctx, "replayd.ingest.dapt.fin", fmt.Appendf(nil, `{"id":"d%d","text":"doc %d"}`, i, i)); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
	}
	pub(0, 20)
	r, err := l.Read(ctx, ReadOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := readUntil(t, ctx, r, 20)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv = embedded(t, ctx, dir, port)
	defer srv.Close()
	waitFor(t, 30*time.Second, "client reconnect", client.NC.IsConnected)
	// JetStream may need a moment after a restart; Publish retries are the
	// producers' job, so retry here until the stream answers.
	var lastErr error
	waitFor(t, 30*time.Second, "stream available", func() bool {
		// A request sent while the restarted server's JetStream is still
		// starting may never be answered: bound each try.
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, lastErr = l.LastSeq(cctx)
		if lastErr != nil {
			t.Logf("LastSeq: %v", lastErr)
		}
		return lastErr == nil
	})
	pub(20, 40)
	got = append(got, readUntil(t, ctx, r, 40)...)
	for i, s := range got {
		if s.Seq != uint64(i+1) || s.ID != fmt.Sprintf("d%d", i) {
			t.Fatalf("sample %d: seq %d id %s", i, s.Seq, s.ID)
		}
	}
	r.Close()
	client.Close()
	srv.Close()
	waitGoroutines(t, goroutines)
}

func TestIndex(t *testing.T) {
	x := NewIndex()
	for _, s := range []uint64{5, 1, 9, 3, 9, 7} {
		x.Add(BucketSFTGeneral, s)
	}
	if got := x.Seqs(BucketSFTGeneral, 0); !slices.Equal(got, []uint64{1, 3, 5, 7, 9}) {
		t.Fatalf("Seqs = %v", got)
	}
	if n := x.Count(BucketSFTGeneral, 7); n != 3 {
		t.Errorf("Count below 7 = %d", n)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	seen := map[uint64]bool{}
	for range 200 {
		s, ok := x.Random(BucketSFTGeneral, 7, rng)
		if !ok || s >= 7 {
			t.Fatalf("Random = %d, %v", s, ok)
		}
		seen[s] = true
	}
	if len(seen) != 3 {
		t.Errorf("Random covered %v, want 1, 3, 5", seen)
	}
	if _, ok := x.Random(BucketDAPTDomain, 0, rng); ok {
		t.Error("Random on an empty bucket")
	}
	x.TrimBelow(4)
	x.Remove(BucketSFTGeneral, 7)
	if got := x.Seqs(BucketSFTGeneral, 0); !slices.Equal(got, []uint64{5, 9}) {
		t.Errorf("after trim and remove: %v", got)
	}
}

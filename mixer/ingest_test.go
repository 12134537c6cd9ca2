package mixer

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"replayd/ingest"
	"replayd/tokenizer"
)

// byteEncoder tokenizes bytes (token = byte value, specials above 255):
// enough to run the real ingest log without a vocabulary.
type byteEncoder struct{}

func (byteEncoder) EncodeDAPT(text string) ([]int32, []uint8) {
	toks := []int32{256}
	for _, b := range []byte(text) {
		toks = append(toks, int32(b))
	}
	toks = append(toks, 257)
	mask := make([]uint8, len(toks))
	for i := range mask {
		mask[i] = 1
	}
	return toks, mask
}

func (byteEncoder) EncodeChat(turns []tokenizer.Turn) ([]int32, []uint8, error) {
	toks, mask := []int32{256}, []uint8{0}
	for _, t := range turns {
		var m uint8
		switch t.Role {
		case "user", "system":
			toks = append(toks, 258)
		case "assistant":
			toks, m = append(toks, 259), 1
		default:
			return nil, nil, errors.New("bad role " + t.Role)
		}
		mask = append(mask, 0)
		for _, b := range []byte(t.Content) {
			toks, mask = append(toks, int32(b)), append(mask, m)
		}
		toks, mask = append(toks, 260), append(mask, m)
	}
	return toks, mask, nil
}

// TestWithIngestLog runs the mixer on the real JetStream log (embedded
// NATS): *ingest.Log is the mixer's Log as it is, and a crash in the middle
// — state taken, reader and mixer thrown away, a new mixer restored from
// the log and a new reader started at NextFreshSeq — gives the same
// batches as an uninterrupted run, every fresh sample packed once.
func TestWithIngestLog(t *testing.T) {
	ctx := testCtx(t)
	conn, err := ingest.Connect(ctx, ingest.NATSOptions{Embedded: ingest.EmbeddedOptions{DataDir: t.TempDir(), NoListen: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lg, err := ingest.OpenLog(ctx, conn, ingest.StreamOptions{}, byteEncoder{})
	if err != nil {
		t.Fatal(err)
	}
	subjects := []string{"replayd.ingest.dapt.fin", "replayd.ingest.dapt.gen", "replayd.ingest.sft.fin", "replayd.ingest.sft.gen"}
	const total = 240
	for i := range total {
		subj := subjects[i%4]
		var body string
		if i%4 < 2 {
			body = fmt.Sprintf(`{"id":"d%d","text":"document number %d about %s"}`, i, i, subj[len(subj)-3:])
		} else {
			body = fmt.Sprintf(`{"id":"q%d","instruction":"question %d?","output":"answer %d, with some words"}`, i, i, i)
		}
		if _, err := conn.JS.Publish(ctx, subj, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	h := newHost(t, HostConfig{})
	cfg := Config{B: 2, T: 96, Seed: 4}
	const steps, chunk = 20, 12 // steps*chunk == total

	// run draws batches from..to, reading chunk samples from r before each.
	run := func(m *Mixer, r *ingest.Reader, from, to int) []*Batch {
		var out []*Batch
		for i := from; i < to; i++ {
			var ss []ingest.Sample
			for range chunk { // steps*chunk == total: the reader never waits
				s, err := r.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				ss = append(ss, s)
			}
			if err := m.Add(ss); err != nil {
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
	reader := func(start uint64) *ingest.Reader {
		r, err := lg.Read(ctx, ingest.ReadOptions{StartSeq: start, Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	r1 := reader(1)
	m1, _ := New(cfg, lg, loadBuiltin(t, h, "joint-replay", `{"dapt_keep":0.6}`))
	want := run(m1, r1, 0, steps)
	r1.Close()

	r2 := reader(1)
	m2, _ := New(cfg, lg, loadBuiltin(t, h, "joint-replay", `{"dapt_keep":0.6}`))
	got := run(m2, r2, 0, steps/2)
	st, err := m2.State()
	if err != nil {
		t.Fatal(err)
	}
	if m2.Waiting() == 0 {
		t.Fatal("nothing queued at the checkpoint")
	}
	r2.Close()

	m3, _ := New(cfg, lg, loadBuiltin(t, h, "joint-replay", `{"dapt_keep":0.6}`))
	if err := m3.Restore(ctx, st, lg); err != nil {
		t.Fatal(err)
	}
	r3 := reader(m3.NextFreshSeq())
	defer r3.Close()
	got = append(got, run(m3, r3, steps/2, steps)...)

	fresh := map[uint64]int{}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("batch %d differs after the restart:\n got %v\nwant %v", i, got[i].Samples, want[i].Samples)
		}
		for _, s := range got[i].Samples {
			if !s.Replay {
				fresh[s.Seq]++
			}
		}
	}
	for seq, n := range fresh {
		if n != 1 {
			t.Errorf("seq %d packed %d times", seq, n)
		}
	}
	if len(fresh) == 0 {
		t.Fatal("no fresh samples packed")
	}
}

// Command benchingest measures the ingest read path: the shared data set is
// published to an embedded JetStream, then the log is read from sequence 1
// through validation, dead-lettering, tokenization and the chat template
// (parallel, in sequence order) until the reader reaches the end. Only the
// read is timed. The last line is
//
//	bench-ingest samples_s=… mb_s=… tokens_s=…
//
// The tokenizer is a tokenizer.json given with -tokenizer, else GPT-2's
// ranks (tiktoken r50k_base, embedded offline) with the chat template's
// special tokens added.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"time"

	"replayd/ingest"
	"replayd/ingest/internal/gpt2chat"
	"replayd/tokenizer"
)

// files maps each training file of the shared data to its subject.
var files = []struct {
	path   string
	kind   ingest.Kind
	domain string
}{
	{"finance_raw/reuters21578_train.jsonl", ingest.KindDAPT, "fin"},
	{"finance_sft/fpb_sentiment_train.jsonl", ingest.KindSFT, "fin"},
	{"finance_sft/finner_train.jsonl", ingest.KindSFT, "fin"},
	{"general_raw/wikipedia_en_train.jsonl", ingest.KindDAPT, "gen"},
	{"general_sft/dolly_5k.jsonl", ingest.KindSFT, "gen"},
	{"general_sft/lima_1k.jsonl", ingest.KindSFT, "gen"},
}

func main() {
	data := flag.String("data", "../shared/data", "shared data folder")
	tokPath := flag.String("tokenizer", "", "tokenizer.json (default: GPT-2 ranks + chat special tokens)")
	workers := flag.Int("workers", runtime.GOMAXPROCS(0), "tokenization goroutines")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *data, *tokPath, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "bench-ingest:", err)
		os.Exit(1)
	}
}

func loadTokenizer(path string) (*tokenizer.ChatTemplate, string, error) {
	var tok *tokenizer.Tokenizer
	var err error
	if path == "" {
		ct, err := gpt2chat.New()
		if err != nil {
			return nil, "", err
		}
		return ct, fmt.Sprintf("gpt2-r50k+chat vocab=%d", ct.Tokenizer().VocabSize()), nil
	}
	tok, err = tokenizer.Load(path)
	if err != nil {
		return nil, "", fmt.Errorf("tokenizer: %w", err)
	}
	ct, err := tok.ChatTemplate()
	if err != nil {
		return nil, "", err
	}
	return ct, fmt.Sprintf("%s vocab=%d", path, tok.VocabSize()), nil
}

func run(ctx context.Context, data, tokPath string, workers int) error {
	if _, err := os.Stat(data); err != nil {
		return fmt.Errorf("shared data: %w", err)
	}
	enc, tokName, err := loadTokenizer(tokPath)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bench-ingest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	conn, err := ingest.Connect(ctx, ingest.NATSOptions{Embedded: ingest.EmbeddedOptions{DataDir: dir, NoListen: true, MaxStore: 4 << 30}})
	if err != nil {
		return err
	}
	defer conn.Close()
	l, err := ingest.OpenLog(ctx, conn, ingest.StreamOptions{}, enc)
	if err != nil {
		return err
	}

	t0 := time.Now()
	var published, bytes int64
	for _, f := range files {
		rep, err := ingest.PublishFiles(ctx, conn.NC, []string{filepath.Join(data, f.path)}, nil,
			ingest.PublishOptions{Kind: f.kind, Domain: f.domain, MaxInFlight: 1024})
		if err != nil {
			return err
		}
		if rep.Rejected > 0 {
			fmt.Printf("publish %s: %d lines rejected, first: %+v\n", f.path, rep.Rejected, rep.Rejects[0])
		}
		published += int64(rep.Published)
		bytes += rep.Bytes
	}
	// A valid last sample, so the timed loop ends on it even when the
	// data's last line were a reject (Next skips rejects).
	if _, err := conn.JS.Publish(ctx, "replayd.ingest.dapt.fin", []byte(`{"id":"bench-end","text":"end of the benchmark"}`)); err != nil {
		return err
	}
	pubSecs := time.Since(t0).Seconds()
	fmt.Printf("publish samples=%d mb=%.1f seconds=%.2f samples_s=%.0f\n", published, float64(bytes)/1e6, pubSecs, float64(published)/pubSecs)
	last, err := l.LastSeq(ctx)
	if err != nil {
		return err
	}
	if last == 0 {
		return errors.New("nothing published")
	}

	t0 = time.Now()
	r, err := l.Read(ctx, ingest.ReadOptions{Workers: workers})
	if err != nil {
		return err
	}
	defer r.Close()
	var maskOnes int64
	for {
		s, err := r.Next(ctx)
		if err != nil {
			return err
		}
		for _, m := range s.LossMask {
			maskOnes += int64(m)
		}
		if s.Seq >= last {
			break
		}
	}
	secs := time.Since(t0).Seconds()
	st := r.Stats()
	r.Close()
	fmt.Printf("tokenizer %s workers=%d GOMAXPROCS=%d\n", tokName, workers, runtime.GOMAXPROCS(0))
	fmt.Printf("read samples=%d rejected=%v tokens=%d target_tokens=%d mb=%.1f seconds=%.2f\n",
		st.Samples, st.Rejected, st.Tokens, maskOnes, float64(st.Bytes)/1e6, secs)
	// Replay reads: random positions by direct get, one at a time as the
	// mixer does, with the index's seeded RNG draws.
	rng := rand.New(rand.NewPCG(1, 2))
	const gets = 2000
	t0 = time.Now()
	var getTokens int
	for range gets {
		b := ingest.Bucket(rng.IntN(ingest.NumBuckets))
		seq, ok := l.Index().Random(b, 0, rng)
		if !ok {
			return fmt.Errorf("index has no %v sample", b)
		}
		s, err := l.Get(ctx, seq)
		if err != nil {
			return err
		}
		getTokens += len(s.Tokens)
	}
	getSecs := time.Since(t0).Seconds()
	fmt.Printf("replay-get samples=%d seconds=%.2f samples_s=%.0f tokens_s=%.0f (sequential, one goroutine)\n",
		gets, getSecs, gets/getSecs, float64(getTokens)/getSecs)
	fmt.Printf("bench-ingest samples_s=%.0f mb_s=%.2f tokens_s=%.0f\n",
		float64(st.Samples)/secs, float64(st.Bytes)/1e6/secs, float64(st.Tokens)/secs)
	return nil
}

package tokenizer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// trainFiles are the shared training files (never *_val, *_test or eval).
var trainFiles = []string{
	"finance_raw/reuters21578_train.jsonl",
	"general_raw/wikipedia_en_train.jsonl",
	"finance_sft/fpb_sentiment_train.jsonl",
	"finance_sft/finner_train.jsonl",
	"general_sft/dolly_5k.jsonl",
	"general_sft/lima_1k.jsonl",
}

func sharedPaths(t *testing.T, rels ...string) []string {
	t.Helper()
	out := make([]string, len(rels))
	for i, r := range rels {
		out[i] = filepath.Join(dataDir, r)
		if _, err := os.Stat(out[i]); err != nil {
			t.Skipf("shared data %s is absent: %v", out[i], err)
		}
	}
	return out
}

func bytesPerToken(tk *Tokenizer, texts []string) float64 {
	nb, nt := 0, 0
	for i, ids := range tk.EncodeBatch(texts, 2) {
		nb += len(texts[i])
		nt += len(ids)
	}
	return float64(nb) / float64(nt)
}

// TestTrainBytesPerToken trains at vocab 8192 on the shared training files
// (about 28 MB, a few seconds) and checks compression on held-out text,
// logged beside GPT-2's 50k vocabulary.
func TestTrainBytesPerToken(t *testing.T) {
	files := sharedPaths(t, trainFiles...)
	tk, err := Train(context.Background(), TrainOptions{VocabSize: 8192}, files...)
	if err != nil {
		t.Fatal(err)
	}
	if tk.VocabSize() != 8192 {
		t.Fatalf("VocabSize = %d, want 8192", tk.VocabSize())
	}
	data, err := tk.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := FromJSON(data)
	if err != nil {
		t.Fatalf("reload trained tokenizer: %v", err)
	}
	if _, err := loaded.ChatTemplate(); err != nil {
		t.Fatalf("trained tokenizer lacks chat tokens: %v", err)
	}
	gpt2 := newGPT2Fixture(t).ours
	for _, f := range valFiles {
		texts := readTexts(t, f)
		for i, s := range texts {
			if d := loaded.Decode(loaded.Encode(s)); d != s {
				t.Fatalf("%s line %d: decode(encode(x)) != x", f, i)
			}
		}
		ours, ref := bytesPerToken(loaded, texts), bytesPerToken(gpt2, texts)
		t.Logf("%s: bytes/token ours(8192)=%.3f gpt2(50257)=%.3f", f, ours, ref)
		if ours < 3.3 {
			t.Errorf("%s: %.3f bytes/token, want >= 3.3", f, ours)
		}
	}
}

// TestTrainDeterministic trains twice on the same data and expects
// byte-identical tokenizer.json output.
func TestTrainDeterministic(t *testing.T) {
	files := sharedPaths(t, "finance_sft/fpb_sentiment_train.jsonl", "general_sft/lima_1k.jsonl")
	var outs [][]byte
	for range 2 {
		tk, err := Train(context.Background(), TrainOptions{VocabSize: 2000}, files...)
		if err != nil {
			t.Fatal(err)
		}
		data, err := tk.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, data)
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Fatal("two trainings on the same input wrote different tokenizer.json")
	}
}

// TestTrainPlainTextAndPruning trains on a plain text file with a word cap
// far below the number of distinct words, and GPT-2 style.
func TestTrainPlainTextAndPruning(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "corpus.txt")
	var b strings.Builder
	for i := range 20000 {
		b.WriteString("the quarterly profit rose ")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(" unique")
		b.WriteString(strings.Repeat("q", i%13))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(string(rune('a' + (i/26)%26)))
		b.WriteString(string(rune('a' + (i/676)%26)))
		b.WriteString(" pct\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tk, err := Train(context.Background(), TrainOptions{VocabSize: 400, MaxWords: 1000, Style: StyleGPT2}, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tk.TokenID("Ġprofit"); !ok {
		t.Errorf("frequent word \" profit\" was not learned")
	}
	s := "the quarterly profit rose 5 pct\n"
	ids := tk.Encode(s)
	if tk.Decode(ids) != s || len(ids) > 12 {
		t.Errorf("Encode(%q) = %v (%d ids)", s, ids, len(ids))
	}
	if tk.VocabSize() > 400 {
		t.Errorf("VocabSize %d > 400", tk.VocabSize())
	}
}

func TestTrainCancel(t *testing.T) {
	files := sharedPaths(t, "finance_raw/reuters21578_train.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Train(ctx, TrainOptions{}, files...)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Train with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestTrainErrors(t *testing.T) {
	if _, err := Train(context.Background(), TrainOptions{VocabSize: 100}, "x"); err == nil {
		t.Error("vocab below 256+specials accepted")
	}
	if _, err := Train(context.Background(), TrainOptions{}); err == nil {
		t.Error("no files accepted")
	}
	if _, err := Train(context.Background(), TrainOptions{}, filepath.Join(t.TempDir(), "missing.jsonl")); err == nil {
		t.Error("missing file accepted")
	}
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte("{not json\n"), 0o644)
	if _, err := Train(context.Background(), TrainOptions{}, bad); err == nil {
		t.Error("malformed JSONL accepted")
	}
}

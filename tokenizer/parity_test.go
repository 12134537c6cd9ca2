package tokenizer

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestGPT2Parity checks that tiktoken's GPT-2 ranks, written as a
// tokenizer.json and loaded back through FromJSON, give tiktoken's ids on
// real text and on odd text, and that decoding restores the text.
func TestGPT2Parity(t *testing.T) {
	fx := newGPT2Fixture(t)
	if got := fx.ours.VocabSize(); got != 50257 {
		t.Fatalf("VocabSize = %d, want 50257", got)
	}
	corpora := map[string][]string{"fuzz": fuzzCorpus(3000)}
	for _, f := range valFiles {
		corpora[f] = readTexts(t, f)
	}
	for name, texts := range corpora {
		t.Run(name, func(t *testing.T) {
			bad := 0
			for i, text := range texts {
				ours := fx.ours.EncodeOrdinary(text)
				if got := fx.ours.Decode(ours); got != text {
					t.Errorf("line %d: decode(encode(x)) != x: %q vs %q", i, got, text)
				}
				if !utf8.ValidString(text) {
					continue // tiktoken-go replaces invalid bytes
				}
				want := toInt32(fx.tik.EncodeOrdinary(text))
				if !equalIDs(ours, want) {
					bad++
					if bad <= 5 {
						t.Errorf("line %d %q:\n ours %v\n tiktoken %v", i, trunc(text), ours, want)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d lines differ from tiktoken", bad, len(texts))
			}
		})
	}
}

func trunc(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// TestSpecialTokens checks that Encode honours special tokens in text and
// EncodeOrdinary does not.
func TestSpecialTokens(t *testing.T) {
	fx := newGPT2Fixture(t)
	const eot = 50256
	cases := []struct {
		text           string
		wantSpecial    int // occurrences of id 50256 in Encode
		wantOrdSpecial int // in EncodeOrdinary
	}{
		{"<|endoftext|>", 1, 0},
		{"Hello<|endoftext|>world", 1, 0},
		{"a <|endoftext|><|endoftext|> b", 2, 0},
		{"<|endoftext|", 0, 0},
		{"no markers here", 0, 0},
	}
	for _, c := range cases {
		got := fx.ours.Encode(c.text)
		if n := count(got, eot); n != c.wantSpecial {
			t.Errorf("Encode(%q) = %v: %d special, want %d", c.text, got, n, c.wantSpecial)
		}
		if want := toInt32(fx.tik.Encode(c.text, []string{"all"}, nil)); !equalIDs(got, want) {
			t.Errorf("Encode(%q) = %v, tiktoken (all special allowed) %v", c.text, got, want)
		}
		ord := fx.ours.EncodeOrdinary(c.text)
		if n := count(ord, eot); n != c.wantOrdSpecial {
			t.Errorf("EncodeOrdinary(%q) = %v has the special id", c.text, ord)
		}
		if want := toInt32(fx.tik.EncodeOrdinary(c.text)); !equalIDs(ord, want) {
			t.Errorf("EncodeOrdinary(%q) = %v, tiktoken %v", c.text, ord, want)
		}
		if d := fx.ours.Decode(got); d != c.text {
			t.Errorf("Decode(Encode(%q)) = %q", c.text, d)
		}
	}
}

func count(ids []int32, id int32) int {
	n := 0
	for _, v := range ids {
		if v == id {
			n++
		}
	}
	return n
}

// TestEncodeBatchConcurrent checks that EncodeBatch over many goroutines
// (sharing the cache) gives the sequential ids.
func TestEncodeBatchConcurrent(t *testing.T) {
	fx := newGPT2Fixture(t)
	texts := fuzzCorpus(2000)
	texts = append(texts, strings.Split(strings.Repeat("the market rose 5.5 pct in the week\n", 50), "\n")...)
	got := fx.ours.EncodeBatch(texts, 8)
	for i, text := range texts {
		if want := fx.ours.Encode(text); !equalIDs(got[i], want) {
			t.Fatalf("text %d: batch %v, sequential %v", i, got[i], want)
		}
	}
}

package tokenizer

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/dlclark/regexp2"
)

// scanSplit cuts s with a hand-written scanner.
func scanSplit(next func(string, int) int, s string) []string {
	var out []string
	for i := 0; i < len(s); {
		j := next(s, i)
		if j <= i {
			panic("scanner did not advance")
		}
		out = append(out, s[i:j])
		i = j
	}
	return out
}

// scanners pairs each scanner with its pattern compiled by regexp2, the
// reference implementation (it has the look-ahead Go's regexp lacks).
func scanners(t testing.TB) []struct {
	name string
	next func(string, int) int
	re   *regexp2.Regexp
} {
	t.Helper()
	return []struct {
		name string
		next func(string, int) int
		re   *regexp2.Regexp
	}{
		{"gpt2", gpt2Next, regexp2.MustCompile(GPT2Pattern, regexp2.None)},
		{"llama3", llama3Next, regexp2.MustCompile(Llama3Pattern, regexp2.None)},
	}
}

func diffPieces(a, b []string) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return fmt.Sprintf("piece %d: %q vs %q", i, a[i], b[i])
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("piece counts %d vs %d", len(a), len(b))
	}
	return ""
}

// TestScannersMatchRegexp2 compares both scanners with regexp2 on the
// held-out data and the fuzz corpus.
func TestScannersMatchRegexp2(t *testing.T) {
	corpora := map[string][]string{"fuzz": fuzzCorpus(3000)}
	for _, f := range valFiles {
		corpora[f] = readTexts(t, f)
	}
	for _, sc := range scanners(t) {
		for name, texts := range corpora {
			bad := 0
			for i, s := range texts {
				got, want := scanSplit(sc.next, s), regexSplit(sc.re, s)
				if d := diffPieces(got, want); d != "" {
					bad++
					if bad <= 5 {
						t.Errorf("%s %s line %d: %s", sc.name, name, i, d)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%s %s: %d of %d texts differ", sc.name, name, bad, len(texts))
			}
		}
	}
}

// TestContractionCaseFolding checks, for every BMP rune, that the
// scanners' contraction rule (case-insensitive for LLaMA 3) agrees with
// regexp2's case folding.
func TestContractionCaseFolding(t *testing.T) {
	for _, sc := range scanners(t) {
		for r := rune(1); r < 0x10000; r++ {
			if r >= 0xD800 && r <= 0xDFFF {
				continue
			}
			for _, tail := range []string{"", "e", "E", "l", "L"} {
				s := "'" + string(r) + tail + "!"
				if d := diffPieces(scanSplit(sc.next, s), regexSplit(sc.re, s)); d != "" {
					t.Fatalf("%s %q: %s", sc.name, s, d)
				}
			}
		}
	}
}

// TestLlama3StyleEncode trains a small LLaMA-3-style tokenizer, writes and
// reloads it, and checks that its ids equal those obtained with regexp2
// doing the Split (the path an unknown pattern takes), with no panic.
func TestLlama3StyleEncode(t *testing.T) {
	files := sharedPaths(t, "finance_sft/fpb_sentiment_train.jsonl", "general_sft/dolly_5k.jsonl")
	tk, err := Train(context.Background(), TrainOptions{VocabSize: 3000}, files...)
	if err != nil {
		t.Fatal(err)
	}
	data, err := tk.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if tk, err = FromJSON(data); err != nil {
		t.Fatal(err)
	}
	if tk.pre.steps[0].next == nil {
		t.Fatal("LLaMA 3 pattern did not get the hand-written scanner")
	}
	ref := *tk
	ref.cache = newWordCache(1024)
	ref.pre = &preTokenizer{steps: []preStep{{re: regexp2.MustCompile(Llama3Pattern, regexp2.None)}, {whole: true}}}
	texts := append(fuzzCorpus(1000), readTexts(t, valFiles[0])...)
	for i, s := range texts {
		got, want := tk.Encode(s), ref.Encode(s)
		if !equalIDs(got, want) {
			t.Fatalf("text %d %q: scanner ids %v, regexp2 ids %v", i, trunc(s), got, want)
		}
		if tk.Decode(got) != s {
			t.Fatalf("text %d: decode(encode(x)) != x", i)
		}
	}
}

// FuzzPreTokenizers compares the GPT-2 and LLaMA 3 scanners with regexp2 on
// arbitrary input. Run: go test ./tokenizer -run '^$' -fuzz FuzzPreTokenizers -fuzztime 30s
func FuzzPreTokenizers(f *testing.F) {
	for _, s := range fuzzCorpus(60) {
		f.Add(s)
	}
	scs := scanners(f)
	f.Fuzz(func(t *testing.T, s string) {
		for _, sc := range scs {
			got := scanSplit(sc.next, s)
			if strings.Join(got, "") != s {
				t.Fatalf("%s: pieces do not cover the input", sc.name)
			}
			// Invalid UTF-8 is compared too: regexp2 sees U+FFFD per
			// invalid byte, which the scanners classify as "other" alike.
			if d := diffPieces(got, regexSplit(sc.re, s)); d != "" {
				t.Fatalf("%s %q: %s", sc.name, s, d)
			}
		}
	})
}

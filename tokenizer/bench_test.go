package tokenizer

import "testing"

// BenchmarkEncode encodes the held-out texts with GPT-2's vocabulary
// (warm cache). make bench-tokenizer gives the comparison with tiktoken.
func BenchmarkEncode(b *testing.B) {
	fx := newGPT2Fixture(b)
	var texts []string
	n := 0
	for _, f := range valFiles {
		for _, s := range readTexts(b, f) {
			texts = append(texts, s)
			n += len(s)
		}
	}
	b.SetBytes(int64(n))
	b.ResetTimer()
	for range b.N {
		for _, s := range texts {
			fx.ours.EncodeOrdinary(s)
		}
	}
}

// BenchmarkEncodeBatch2 is BenchmarkEncode over two goroutines.
func BenchmarkEncodeBatch2(b *testing.B) {
	fx := newGPT2Fixture(b)
	var texts []string
	n := 0
	for _, f := range valFiles {
		for _, s := range readTexts(b, f) {
			texts = append(texts, s)
			n += len(s)
		}
	}
	b.SetBytes(int64(n))
	b.ResetTimer()
	for range b.N {
		fx.ours.EncodeBatch(texts, 2)
	}
}

package experiment

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"replayd/ingest"
	"replayd/tokenizer"
)

// dataSeed fixes which samples a capped bucket keeps, independently of the
// training seeds, so every variant and seed trains from the same data.
const dataSeed = 0x5eed

// Corpus is the tokenized training data of the four buckets, shared
// read-only by every run.
type Corpus struct {
	// Buckets holds the samples of each ingest bucket, in file order.
	Buckets [ingest.NumBuckets][]ingest.Sample
	// Tokens counts the tokens of each bucket.
	Tokens [ingest.NumBuckets]int
	// Holdout is the held-out general SFT lines (raw JSON), if any.
	Holdout [][]byte
}

// expand resolves globs, sorted, and fails on a pattern that matches
// nothing (a typo must not silently drop a bucket).
func expand(patterns []string) ([]string, error) {
	var out []string
	for _, p := range patterns {
		m, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("glob %s: %w", p, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("%s matches no file", p)
		}
		sort.Strings(m)
		out = append(out, m...)
	}
	return out, nil
}

// readLines returns the non-empty lines of a JSONL file.
func readLines(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var out [][]byte
	for sc.Scan() {
		if b := sc.Bytes(); len(strings.TrimSpace(string(b))) > 0 {
			out = append(out, append([]byte(nil), b...))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

// LoadCorpus reads and tokenizes the files of d with the chat template.
// SFT lines become turns as ingest maps them (user = instruction + "\n\n"
// + input, assistant = output); lines ingest would reject are skipped and
// counted. maxTokens truncates each sample. The holdout's first N lines
// are removed from its file's samples.
func LoadCorpus(ctx context.Context, d Data, ct *tokenizer.ChatTemplate, maxTokens int) (*Corpus, error) {
	c := &Corpus{}
	var holdoutPath string
	if d.Holdout != nil {
		holdoutPath = filepath.Clean(d.Holdout.File)
	}
	srcs := [ingest.NumBuckets][]string{
		ingest.BucketDAPTDomain: d.DAPTDomain, ingest.BucketDAPTGeneral: d.DAPTGeneral,
		ingest.BucketSFTDomain: d.SFTDomain, ingest.BucketSFTGeneral: d.SFTGeneral,
	}
	for b := range ingest.NumBuckets {
		bucket := ingest.Bucket(b)
		if len(srcs[b]) == 0 {
			continue
		}
		files, err := expand(srcs[b])
		if err != nil {
			return nil, fmt.Errorf("data %s: %w", bucket, err)
		}
		var lines [][]byte
		for _, path := range files {
			ls, err := readLines(path)
			if err != nil {
				return nil, fmt.Errorf("data %s: %w", bucket, err)
			}
			if holdoutPath != "" && filepath.Clean(path) == holdoutPath {
				n := min(d.Holdout.N, len(ls))
				c.Holdout = append(c.Holdout, ls[:n]...)
				ls = ls[n:]
			}
			lines = append(lines, ls...)
		}
		if d.MaxSamples > 0 && len(lines) > d.MaxSamples {
			// A seeded random subset in file order: the first lines of a
			// file are often one class or one source.
			r := rand.New(rand.NewPCG(dataSeed, uint64(b)))
			idx := r.Perm(len(lines))[:d.MaxSamples]
			sort.Ints(idx)
			sub := make([][]byte, len(idx))
			for i, j := range idx {
				sub[i] = lines[j]
			}
			lines = sub
		}
		kind := ingest.KindDAPT
		if bucket == ingest.BucketSFTDomain || bucket == ingest.BucketSFTGeneral {
			kind = ingest.KindSFT
		}
		for i, line := range lines {
			if i%1024 == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			for j, s := range encodeLine(ct, kind, bucket, line, maxTokens) {
				s.ID = fmt.Sprintf("%s/%d/%d", bucket, i, j)
				c.Buckets[b] = append(c.Buckets[b], s)
				c.Tokens[b] += len(s.Tokens)
			}
		}
	}
	if holdoutPath != "" && len(c.Holdout) == 0 {
		return nil, fmt.Errorf("data.holdout %s is not one of the training files (nothing held out)", d.Holdout.File)
	}
	return c, nil
}

// encodeLine validates a wire line as ingest does and tokenizes it. A raw
// document longer than maxTokens is cut into consecutive chunks (long
// Wikipedia articles would otherwise lose most of their text); an SFT
// sample is truncated, and dropped if no answer token is left. Invalid
// lines give nothing.
func encodeLine(ct *tokenizer.ChatTemplate, kind ingest.Kind, bucket ingest.Bucket, line []byte, maxTokens int) []ingest.Sample {
	rec, err := ingest.DefaultLimits.Decode(kind, line)
	if err != nil {
		return nil
	}
	mk := func(toks []int32, mask []uint8) ingest.Sample {
		return ingest.Sample{Kind: kind, Bucket: bucket, Task: rec.Task, Tokens: toks, LossMask: mask, Bytes: len(line)}
	}
	if kind == ingest.KindDAPT {
		toks, mask := ct.EncodeDAPT(rec.Text)
		if maxTokens <= 0 || len(toks) <= maxTokens {
			return []ingest.Sample{mk(toks, mask)}
		}
		var out []ingest.Sample
		for lo := 0; lo+1 < len(toks); lo += maxTokens {
			hi := min(lo+maxTokens, len(toks))
			out = append(out, mk(toks[lo:hi:hi], mask[lo:hi:hi]))
		}
		return out
	}
	toks, mask, err := ct.EncodeChat(rec.Turns)
	if err != nil {
		return nil
	}
	if maxTokens > 0 && len(toks) > maxTokens {
		toks, mask = toks[:maxTokens], mask[:maxTokens]
	}
	if !hasTarget(mask) {
		return nil
	}
	return []ingest.Sample{mk(toks, mask)}
}

func hasTarget(mask []uint8) bool {
	for _, m := range mask[min(1, len(mask)):] {
		if m != 0 {
			return true
		}
	}
	return false
}

// unmasked returns s with every token but the first a target: SFT trained
// "without the instruction mask" (loss on the prompt and template too).
// The first token has no predecessor, so it can never be a target.
func unmasked(s ingest.Sample) ingest.Sample {
	m := make([]uint8, len(s.Tokens))
	for i := 1; i < len(m); i++ {
		m[i] = 1
	}
	s.LossMask = m
	return s
}

package tokenizer

import (
	"bufio"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

// TrainOptions configure Train.
type TrainOptions struct {
	// VocabSize is the total number of ids: 256 byte tokens, the learned
	// merges and the special tokens. Default 8192.
	VocabSize int
	// MinFrequency stops training when the most frequent pair occurs
	// fewer times. Default 2.
	MinFrequency int
	// MaxWords caps the distinct pre-token words held while counting; when
	// exceeded, the rarest words are pruned (raising the floor each time),
	// so memory stays bounded whatever the corpus size. Default 2,000,000.
	MaxWords int
	// Style is the pre-tokenizer of the result. Default StyleLlama3.
	Style Style
	// SpecialTokens are appended after the learned vocabulary. Default
	// SpecialTokens().
	SpecialTokens []string
	// Progress, when set, receives progress bars (e.g. os.Stderr).
	Progress io.Writer
}

func (o *TrainOptions) defaults() error {
	if o.VocabSize == 0 {
		o.VocabSize = 8192
	}
	if o.MinFrequency == 0 {
		o.MinFrequency = 2
	}
	if o.MaxWords == 0 {
		o.MaxWords = 2_000_000
	}
	if o.SpecialTokens == nil {
		o.SpecialTokens = SpecialTokens()
	}
	if o.VocabSize < 256+len(o.SpecialTokens) {
		return fmt.Errorf("vocab size %d is below 256 bytes + %d special tokens", o.VocabSize, len(o.SpecialTokens))
	}
	if o.MaxWords < 1000 {
		return fmt.Errorf("MaxWords %d is too small", o.MaxWords)
	}
	return nil
}

// Train learns a byte-level BPE tokenizer from files: JSONL (the `text`
// field, else `instruction`, `input` and `output`, else `messages[].content`)
// or plain text (line by line). Pre-token words are counted with bounded
// memory, then pairs are merged most frequent first (ties: smaller left id,
// then smaller right id), with pair counts updated incrementally and a
// lazy max-heap, so each merge costs only the words that contain the pair.
// The result is deterministic for given files and options.
func Train(ctx context.Context, opts TrainOptions, files ...string) (*Tokenizer, error) {
	if err := opts.defaults(); err != nil {
		return nil, fmt.Errorf("tokenizer: train: %w", err)
	}
	if len(files) == 0 {
		return nil, errors.New("tokenizer: train: no input files")
	}
	next := llama3Next
	if opts.Style == StyleGPT2 {
		next = gpt2Next
	}
	wc, err := countWords(ctx, opts, next, files)
	if err != nil {
		return nil, err
	}
	bl := newByteLevel()
	tokens, merges, err := learnMerges(ctx, opts, wc)
	if err != nil {
		return nil, err
	}
	vocab := make(map[string]int32, len(tokens))
	for id, tok := range tokens {
		vocab[bl.encode([]byte(tok))] = int32(id)
	}
	mergeStrs := make([][2]string, len(merges))
	for i, m := range merges {
		mergeStrs[i] = [2]string{bl.encode([]byte(tokens[m[0]])), bl.encode([]byte(tokens[m[1]]))}
	}
	added := make([]AddedToken, len(opts.SpecialTokens))
	for i, s := range opts.SpecialTokens {
		added[i] = AddedToken{ID: int32(len(tokens) + i), Content: s, Special: true}
	}
	bos, bosID := "", int32(0)
	for _, a := range added {
		if a.Content == BeginOfText {
			bos, bosID = a.Content, a.ID
		}
	}
	t, err := build(vocab, mergeStrs, added, false, components(opts.Style, bos, bosID))
	if err != nil {
		return nil, fmt.Errorf("tokenizer: train: %w", err)
	}
	return t, nil
}

// wordCounter counts pre-token words with a cap on distinct entries.
type wordCounter struct {
	counts   map[string]int64
	maxWords int
	floor    int64 // words at or below this count were pruned
}

func (w *wordCounter) add(word string) {
	if c, ok := w.counts[word]; ok {
		w.counts[word] = c + 1
		return
	}
	w.counts[strings.Clone(word)] = 1
	if len(w.counts) > w.maxWords {
		w.prune()
	}
}

// prune drops the rarest words until at most half the cap is left. Words
// dropped are rare by construction, so the merges they would have voted
// for are the least frequent ones anyway.
func (w *wordCounter) prune() {
	for len(w.counts) > w.maxWords/2 {
		w.floor++
		for k, c := range w.counts {
			if c <= w.floor {
				delete(w.counts, k)
			}
		}
	}
}

func countWords(ctx context.Context, opts TrainOptions, next func(string, int) int, files []string) (*wordCounter, error) {
	var total int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: train: %w", err)
		}
		total += st.Size()
	}
	var bar *progressbar.ProgressBar
	if opts.Progress != nil {
		bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(opts.Progress),
			progressbar.OptionSetDescription("counting words"), progressbar.OptionShowBytes(true),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionOnCompletion(func() { fmt.Fprintln(opts.Progress) }))
	}
	wc := &wordCounter{counts: make(map[string]int64, 1<<16), maxWords: opts.MaxWords}
	addText := func(s string) {
		for i := 0; i < len(s); {
			j := next(s, i)
			wc.add(s[i:j])
			i = j
		}
	}
	for _, f := range files {
		if err := countFile(ctx, f, bar, addText); err != nil {
			return nil, err
		}
	}
	if bar != nil {
		bar.Finish()
	}
	return wc, nil
}

// sample is the JSONL fields Train reads.
type sample struct {
	Text        *string `json:"text"`
	Instruction string  `json:"instruction"`
	Input       string  `json:"input"`
	Output      string  `json:"output"`
	Messages    []struct {
		Content string `json:"content"`
	} `json:"messages"`
}

func countFile(ctx context.Context, path string, bar *progressbar.ProgressBar, addText func(string)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("tokenizer: train: %w", err)
	}
	defer f.Close()
	jsonl := strings.HasSuffix(path, ".jsonl") || strings.HasSuffix(path, ".json") || filepath.Ext(path) == ".ndjson"
	r := bufio.NewReaderSize(f, 1<<20)
	for lineNo := 1; ; lineNo++ {
		line, err := r.ReadString('\n')
		if bar != nil && len(line) > 0 {
			bar.Add(len(line))
		}
		if line != "" {
			if jsonl {
				if strings.TrimSpace(line) != "" {
					var s sample
					if jerr := json.Unmarshal([]byte(line), &s); jerr != nil {
						return fmt.Errorf("tokenizer: train: %s:%d: %w", path, lineNo, jerr)
					}
					switch {
					case s.Text != nil:
						addText(*s.Text)
					case len(s.Messages) > 0:
						for _, m := range s.Messages {
							addText(m.Content)
						}
					default:
						for _, t := range []string{s.Instruction, s.Input, s.Output} {
							if t != "" {
								addText(t)
							}
						}
					}
				}
			} else {
				addText(line)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tokenizer: train: read %s: %w", path, err)
		}
		if lineNo%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("tokenizer: train: %w", err)
			}
		}
	}
}

// pairItem is a heap entry: a pair and its count when pushed. An entry whose
// count no longer matches is stale and skipped; every change of a count
// pushes a fresh entry.
type pairItem struct {
	pair  uint64
	count int64
}

type pairHeap []pairItem

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].count != h[j].count {
		return h[i].count > h[j].count
	}
	return h[i].pair < h[j].pair
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairItem)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// learnMerges runs BPE training on the counted words. It returns the token
// byte strings by id (0..255 are the bytes) and the merges in rank order.
func learnMerges(ctx context.Context, opts TrainOptions, wc *wordCounter) (tokens []string, merges [][2]int32, err error) {
	// Sorted words give ids and processing order independent of map order.
	keys := make([]string, 0, len(wc.counts))
	for k := range wc.counts {
		if len(k) > 1 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	words := make([][]int32, len(keys))
	freq := make([]int64, len(keys))
	for i, k := range keys {
		w := make([]int32, len(k))
		for j := 0; j < len(k); j++ {
			w[j] = int32(k[j])
		}
		words[i] = w
		freq[i] = wc.counts[k]
	}
	wc.counts = nil // the words now live in words; let the map go

	counts := make(map[uint64]int64)
	where := make(map[uint64][]int32)
	for i, w := range words {
		for j := 0; j+1 < len(w); j++ {
			p := pairKey(w[j], w[j+1])
			counts[p] += freq[i]
			if l := where[p]; len(l) == 0 || l[len(l)-1] != int32(i) {
				where[p] = append(l, int32(i))
			}
		}
	}
	h := make(pairHeap, 0, len(counts))
	for p, c := range counts {
		h = append(h, pairItem{p, c})
	}
	heap.Init(&h)

	tokens = make([]string, 256, opts.VocabSize)
	for b := 0; b < 256; b++ {
		tokens[b] = string([]byte{byte(b)})
	}
	tokenID := make(map[string]int32, opts.VocabSize)
	for id, tok := range tokens {
		tokenID[tok] = int32(id)
	}
	target := opts.VocabSize - len(opts.SpecialTokens)
	var bar *progressbar.ProgressBar
	if opts.Progress != nil {
		bar = progressbar.NewOptions(target-256, progressbar.OptionSetWriter(opts.Progress),
			progressbar.OptionSetDescription("merging"), progressbar.OptionShowCount(),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionOnCompletion(func() { fmt.Fprintln(opts.Progress) }))
	}
	seen := make([]int32, len(words)) // merge number that last touched a word
	delta := make(map[uint64]int64)
	var newWord []int32
	for len(tokens) < target && h.Len() > 0 {
		top := heap.Pop(&h).(pairItem)
		if counts[top.pair] != top.count {
			continue // stale
		}
		if top.count < int64(opts.MinFrequency) {
			break
		}
		if len(merges)%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, nil, fmt.Errorf("tokenizer: train: %w", err)
			}
		}
		a, b := int32(top.pair>>32), int32(uint32(top.pair))
		merged := tokens[a] + tokens[b]
		c, exists := tokenID[merged]
		if !exists {
			c = int32(len(tokens))
			tokens = append(tokens, merged)
			tokenID[merged] = c
			if bar != nil {
				bar.Add(1)
			}
		}
		merges = append(merges, [2]int32{a, b})
		stamp := int32(len(merges))
		clear(delta)
		for _, wi := range where[top.pair] {
			if seen[wi] == stamp {
				continue
			}
			seen[wi] = stamp
			w := words[wi]
			newWord = newWord[:0]
			found := false
			for j := 0; j < len(w); j++ {
				if j+1 < len(w) && w[j] == a && w[j+1] == b {
					newWord = append(newWord, c)
					j++
					found = true
				} else {
					newWord = append(newWord, w[j])
				}
			}
			if !found {
				continue // stale entry: an earlier merge removed the pair
			}
			f := freq[wi]
			for j := 0; j+1 < len(w); j++ {
				delta[pairKey(w[j], w[j+1])] -= f
			}
			for j := 0; j+1 < len(newWord); j++ {
				p := pairKey(newWord[j], newWord[j+1])
				delta[p] += f
				if newWord[j] == c || newWord[j+1] == c {
					if l := where[p]; len(l) == 0 || l[len(l)-1] != wi {
						where[p] = append(l, wi)
					}
				}
			}
			words[wi] = slices.Clone(newWord)
		}
		delete(where, top.pair)
		// Apply the deltas in key order so heap pushes are deterministic.
		changed := make([]uint64, 0, len(delta))
		for p, d := range delta {
			if d != 0 {
				changed = append(changed, p)
			}
		}
		slices.Sort(changed)
		for _, p := range changed {
			n := counts[p] + delta[p]
			if n <= 0 {
				delete(counts, p)
				continue
			}
			counts[p] = n
			heap.Push(&h, pairItem{p, n})
		}
	}
	if bar != nil {
		bar.Finish()
	}
	return tokens, merges, nil
}

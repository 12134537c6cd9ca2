package tokenizer

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/sugarme/tokenizer/normalizer"
)

// Tokenizer is a byte-level BPE tokenizer loaded from (or written as) a
// Hugging Face tokenizer.json. It is immutable after construction except for
// its internal word cache, so every method is safe for concurrent use.
type Tokenizer struct {
	bl  *byteLevel
	bpe bpeModel
	// idBytes is the raw text of each id (decoding); nil for unused ids.
	idBytes [][]byte
	// idToken is each id's string as written in tokenizer.json (byte-level
	// form for model tokens, verbatim content for added tokens).
	idToken []string
	// modelToken is the model vocabulary (byte-level strings) by id, ""
	// where an id is only an added token.
	modelToken []string
	// tokenID is the inverse of idToken.
	tokenID map[string]int32
	// mergeList is the merges in rank order, for writing.
	mergeList [][2]int32
	// added are the added tokens, in id order.
	added []AddedToken
	// allAdded matches every added token (Encode); ordinaryAdded only the
	// non-special ones (EncodeOrdinary).
	allAdded, ordinaryAdded *addedMatcher
	pre                     *preTokenizer
	norm                    normalizer.Normalizer
	// raw holds the JSON of the components written back verbatim by
	// MarshalJSON (normalizer, pre_tokenizer, post_processor, decoder,
	// truncation, padding).
	raw   rawParts
	cache *wordCache
}

// AddedToken is an entry of tokenizer.json's added_tokens.
type AddedToken struct {
	ID         int32  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// cacheWords is the number of distinct words the encode cache keeps.
const cacheWords = 1 << 18

// Load reads a tokenizer.json file.
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: read %s: %w", path, err)
	}
	t, err := FromJSON(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: load %s: %w", path, err)
	}
	return t, nil
}

// VocabSize is the number of ids, added tokens included (one more than the
// largest id).
func (t *Tokenizer) VocabSize() int { return len(t.idToken) }

// TokenID returns the id of a token given as it appears in tokenizer.json:
// an added token's content ("<|eot_id|>") or a vocabulary entry in its
// byte-level form ("Ġthe" for " the").
func (t *Tokenizer) TokenID(token string) (int32, bool) {
	id, ok := t.tokenID[token]
	return id, ok
}

// Token returns the tokenizer.json string of id, or "" if id is unused.
func (t *Tokenizer) Token(id int32) string {
	if id < 0 || int(id) >= len(t.idToken) {
		return ""
	}
	return t.idToken[id]
}

// AddedTokens returns a copy of the added tokens, in id order.
func (t *Tokenizer) AddedTokens() []AddedToken {
	return append([]AddedToken(nil), t.added...)
}

// Encode returns the ids of text. Added and special tokens written in the
// text ("<|eot_id|>") become their ids. It matches HF
// Tokenizer.encode(text, add_special_tokens=False): no post-processor
// template is applied (the chat template adds markers itself).
func (t *Tokenizer) Encode(text string) []int32 {
	return t.encode(text, t.allAdded, nil)
}

// EncodeOrdinary returns the ids of text with special tokens treated as
// plain text, so data cannot inject control markers. Non-special added
// tokens are still honoured (as HF does with split_special_tokens=True).
func (t *Tokenizer) EncodeOrdinary(text string) []int32 {
	return t.encode(text, t.ordinaryAdded, nil)
}

// AppendEncodeOrdinary appends EncodeOrdinary(text) to dst.
func (t *Tokenizer) AppendEncodeOrdinary(dst []int32, text string) []int32 {
	return t.encode(text, t.ordinaryAdded, dst)
}

func (t *Tokenizer) encode(text string, am *addedMatcher, dst []int32) []int32 {
	if dst == nil {
		dst = make([]int32, 0, len(text)/3+4)
	}
	for text != "" {
		start, end, id := am.find(text)
		if start < 0 {
			return t.encodeSegment(text, dst)
		}
		if start > 0 {
			dst = t.encodeSegment(text[:start], dst)
		}
		dst = append(dst, id)
		text = text[end:]
	}
	return dst
}

// encodeSegment encodes text that holds no added token: normalize,
// pre-tokenize, then BPE each piece (through the cache).
func (t *Tokenizer) encodeSegment(s string, dst []int32) []int32 {
	if t.norm != nil {
		ns, err := t.norm.Normalize(normalizer.NewNormalizedFrom(s))
		if err == nil {
			s = ns.GetNormalized()
		}
	}
	t.pre.run(s, func(piece string) {
		dst = t.encodePiece(piece, dst)
	})
	return dst
}

func (t *Tokenizer) encodePiece(piece string, dst []int32) []int32 {
	if len(piece) == 1 || len(piece) > cacheMaxWord {
		return t.bpe.encodeWord(piece, dst)
	}
	if t.bpe.ignoreMerges {
		// Whole-word hits (most words) need no cache and no lock.
		if id, ok := t.bpe.vocab[piece]; ok {
			return append(dst, id)
		}
	}
	if ids, ok := t.cache.get(piece); ok {
		return append(dst, ids...)
	}
	n := len(dst)
	dst = t.bpe.encodeWord(piece, dst)
	// Clone: the key must not pin the caller's (possibly huge) text.
	t.cache.put(strings.Clone(piece), append([]int32(nil), dst[n:]...))
	return dst
}

// EncodeBatch encodes texts with up to workers goroutines (GOMAXPROCS when
// workers <= 0) and returns the ids in input order. It returns when all
// goroutines have finished.
func (t *Tokenizer) EncodeBatch(texts []string, workers int) [][]int32 {
	out := make([][]int32, len(texts))
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(texts))
	if workers <= 1 {
		for i, s := range texts {
			out[i] = t.Encode(s)
		}
		return out
	}
	var wg sync.WaitGroup
	// Interleaved assignment balances long and short texts without a
	// shared counter.
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(texts); i += workers {
				out[i] = t.Encode(texts[i])
			}
		}(w)
	}
	wg.Wait()
	return out
}

// Decode returns the text of ids: byte-level tokens back to their bytes and
// added tokens as their content. Unknown ids are skipped. Like HF decode
// with skip_special_tokens=False, except that a sequence cut inside a UTF-8
// character keeps its raw bytes instead of U+FFFD.
func (t *Tokenizer) Decode(ids []int32) string {
	var b strings.Builder
	for _, id := range ids {
		if id >= 0 && int(id) < len(t.idBytes) {
			b.Write(t.idBytes[id])
		}
	}
	return b.String()
}

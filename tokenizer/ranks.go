package tokenizer

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Style is the pre-tokenizer layout of a written tokenizer.json.
type Style int

const (
	// StyleLlama3 is LLaMA 3's Sequence[Split(Llama3Pattern), ByteLevel]
	// with a post-processor that prepends <|begin_of_text|> when HF's
	// add_special_tokens is on.
	StyleLlama3 Style = iota
	// StyleGPT2 is GPT-2's ByteLevel pre-tokenizer (use_regex=true).
	StyleGPT2
)

// components returns the raw JSON of the pre-tokenizer, post-processor and
// decoder for a style, exactly as tokenizers writes them.
func components(style Style, bos string, bosID int32) rawParts {
	byteLevelDec := json.RawMessage(`{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}`)
	if style == StyleGPT2 {
		return rawParts{
			PreTokenizer:  json.RawMessage(`{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}`),
			PostProcessor: json.RawMessage(`{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true}`),
			Decoder:       byteLevelDec,
		}
	}
	pat, _ := marshalNoEscape(Llama3Pattern)
	pre := `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":` + string(pat) +
		`},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]}`
	post := json.RawMessage(`{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true}`)
	if bos != "" {
		b, _ := marshalNoEscape(bos)
		post = json.RawMessage(fmt.Sprintf(`{"type":"Sequence","processors":[{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true},`+
			`{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":%s,"type_id":0}},{"Sequence":{"id":"A","type_id":0}}],`+
			`"pair":[{"SpecialToken":{"id":%s,"type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":%s,"type_id":1}},{"Sequence":{"id":"B","type_id":1}}],`+
			`"special_tokens":{%s:{"id":%s,"ids":[%d],"tokens":[%s]}}}]}`, b, b, b, b, b, bosID, b))
	}
	return rawParts{PreTokenizer: json.RawMessage(pre), PostProcessor: post, Decoder: byteLevelDec}
}

// FromRanks builds a Tokenizer from tiktoken-style mergeable ranks (token
// bytes → rank, which is also the id) and special tokens, for parity tests
// against tiktoken and for importing OpenAI encodings. Merges are recovered
// the way HF's tiktoken converter does: a token's merge is the last step of
// running BPE on its bytes with only lower-ranked tokens. ignore_merges is
// set, since tiktoken looks whole pieces up in the vocabulary first.
func FromRanks(ranks map[string]int, special map[string]int, style Style) (*Tokenizer, error) {
	bl := newByteLevel()
	type entry struct {
		tok  string
		rank int
	}
	entries := make([]entry, 0, len(ranks))
	vocab := make(map[string]int32, len(ranks))
	for tok, r := range ranks {
		entries = append(entries, entry{tok, r})
		vocab[bl.encode([]byte(tok))] = int32(r)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].rank < entries[j].rank })
	var merges [][2]string
	for _, e := range entries {
		if len(e.tok) < 2 {
			continue
		}
		parts := rankMerge(ranks, e.tok, e.rank)
		if len(parts) != 2 {
			continue // unreachable by merging; still in vocab
		}
		merges = append(merges, [2]string{bl.encode([]byte(parts[0])), bl.encode([]byte(parts[1]))})
	}
	added := make([]AddedToken, 0, len(special))
	for s, id := range special {
		added = append(added, AddedToken{ID: int32(id), Content: s, Special: true})
	}
	sort.Slice(added, func(i, j int) bool { return added[i].ID < added[j].ID })
	raw := components(style, "", 0)
	t, err := build(vocab, merges, added, true, raw)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: from ranks: %w", err)
	}
	return t, nil
}

// rankMerge runs tiktoken's merge on tok using only tokens ranked below
// maxRank and returns the final parts.
func rankMerge(ranks map[string]int, tok string, maxRank int) []string {
	parts := make([]string, len(tok))
	for i := 0; i < len(tok); i++ {
		parts[i] = tok[i : i+1]
	}
	for len(parts) > 1 {
		best, bi := maxRank, -1
		for i := 0; i+1 < len(parts); i++ {
			if r, ok := ranks[parts[i]+parts[i+1]]; ok && r < best {
				best, bi = r, i
			}
		}
		if bi < 0 {
			break
		}
		parts[bi] += parts[bi+1]
		parts = append(parts[:bi+1], parts[bi+2:]...)
	}
	return parts
}

package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"replayd/internal/atomicfs"
	"sort"

	"github.com/sugarme/tokenizer/normalizer"
)

// rawParts are the tokenizer.json components kept as JSON: they configure
// behaviour we implement (or that does not change ids) and are written back
// unchanged so a loaded file round-trips.
type rawParts struct {
	Truncation    json.RawMessage
	Padding       json.RawMessage
	Normalizer    json.RawMessage
	PreTokenizer  json.RawMessage
	PostProcessor json.RawMessage
	Decoder       json.RawMessage
}

// hfFile is the schema of a Hugging Face tokenizer.json (tokenizers ≥ 0.13).
type hfFile struct {
	Version       string          `json:"version"`
	Truncation    json.RawMessage `json:"truncation"`
	Padding       json.RawMessage `json:"padding"`
	AddedTokens   []AddedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         hfModel         `json:"model"`
}

type hfModel struct {
	Type                    string           `json:"type"`
	Dropout                 *float64         `json:"dropout"`
	UnkToken                *string          `json:"unk_token"`
	ContinuingSubwordPrefix *string          `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string          `json:"end_of_word_suffix"`
	FuseUnk                 bool             `json:"fuse_unk"`
	ByteFallback            bool             `json:"byte_fallback"`
	IgnoreMerges            bool             `json:"ignore_merges"`
	Vocab                   map[string]int32 `json:"vocab"`
	// Merges is ["a b", …] (tokenizers < 0.20) or [["a", "b"], …].
	Merges json.RawMessage `json:"merges"`
}

// preJSON is any pre_tokenizer or decoder entry.
type preJSON struct {
	Type           string `json:"type"`
	AddPrefixSpace bool   `json:"add_prefix_space"`
	UseRegex       *bool  `json:"use_regex"`
	Pattern        *struct {
		Regex  *string `json:"Regex"`
		String *string `json:"String"`
	} `json:"pattern"`
	Behavior      string    `json:"behavior"`
	Invert        bool      `json:"invert"`
	PreTokenizers []preJSON `json:"pretokenizers"`
	Decoders      []preJSON `json:"decoders"`
}

func isNull(m json.RawMessage) bool {
	m = bytes.TrimSpace(m)
	return len(m) == 0 || bytes.Equal(m, []byte("null"))
}

// FromJSON builds a Tokenizer from the contents of a tokenizer.json. Only
// byte-level BPE is supported (GPT-2, RoBERTa, LLaMA 3, Qwen, …); other
// models, BPE dropout, byte fallback and subword prefixes are rejected with
// an error rather than encoded wrongly.
func FromJSON(data []byte) (*Tokenizer, error) {
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse tokenizer.json: %w", err)
	}
	m := f.Model
	switch {
	case m.Type != "BPE" && m.Type != "":
		return nil, fmt.Errorf("model type %q: only BPE is supported", m.Type)
	case m.Dropout != nil && *m.Dropout > 0:
		return nil, errors.New("BPE dropout is not supported (ids would not be deterministic)")
	case m.ByteFallback:
		return nil, errors.New("byte_fallback BPE is not supported (not byte-level)")
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "",
		m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return nil, errors.New("continuing_subword_prefix/end_of_word_suffix are not supported")
	}
	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	raw := rawParts{
		Truncation: f.Truncation, Padding: f.Padding, Normalizer: f.Normalizer,
		PreTokenizer: f.PreTokenizer, PostProcessor: f.PostProcessor, Decoder: f.Decoder,
	}
	return build(m.Vocab, merges, f.AddedTokens, m.IgnoreMerges, raw)
}

func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err == nil {
		return pairs, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, fmt.Errorf("parse merges: %w", err)
	}
	pairs = make([][2]string, len(lines))
	for i, l := range lines {
		j := bytes.IndexByte([]byte(l), ' ')
		if j <= 0 || j == len(l)-1 {
			return nil, fmt.Errorf("merge %d %q: want \"left right\"", i, l)
		}
		pairs[i] = [2]string{l[:j], l[j+1:]}
	}
	return pairs, nil
}

// build assembles a Tokenizer from a byte-level vocabulary (tokenizer.json
// strings), merges in rank order, added tokens and the raw components.
func build(vocab map[string]int32, merges [][2]string, added []AddedToken, ignoreMerges bool, raw rawParts) (*Tokenizer, error) {
	t := &Tokenizer{bl: newByteLevel(), raw: raw, cache: newWordCache(cacheWords)}
	maxID := int32(-1)
	for tok, id := range vocab {
		if id < 0 {
			return nil, fmt.Errorf("vocab %q: negative id %d", tok, id)
		}
		maxID = max(maxID, id)
	}
	for _, a := range added {
		if a.ID < 0 {
			return nil, fmt.Errorf("added token %q: negative id %d", a.Content, a.ID)
		}
		maxID = max(maxID, a.ID)
	}
	n := int(maxID) + 1
	t.idBytes = make([][]byte, n)
	t.idToken = make([]string, n)
	t.tokenID = make(map[string]int32, len(vocab)+len(added))
	t.bpe = bpeModel{
		merges:       make(map[uint64]uint64, len(merges)),
		vocab:        make(map[string]int32, len(vocab)),
		ignoreMerges: ignoreMerges,
	}
	t.modelToken = make([]string, n)
	for tok, id := range vocab {
		t.modelToken[id] = tok
		t.idToken[id] = tok
		t.tokenID[tok] = id
		if b, ok := t.bl.decode(tok); ok {
			t.idBytes[id] = b
			t.bpe.vocab[string(b)] = id
		} else {
			t.idBytes[id] = []byte(tok)
		}
	}
	for b := 0; b < 256; b++ {
		id, ok := vocab[t.bl.encode([]byte{byte(b)})]
		if !ok {
			id = -1
		}
		t.bpe.byteIDs[b] = id
	}
	t.mergeList = make([][2]int32, 0, len(merges))
	for rank, mg := range merges {
		a, okA := vocab[mg[0]]
		b, okB := vocab[mg[1]]
		c, okC := vocab[mg[0]+mg[1]]
		if !okA || !okB || !okC {
			return nil, fmt.Errorf("merge %d (%q %q): token not in vocab", rank, mg[0], mg[1])
		}
		k := pairKey(a, b)
		if _, dup := t.bpe.merges[k]; dup {
			continue
		}
		t.bpe.merges[k] = uint64(rank)<<32 | uint64(uint32(c))
		t.mergeList = append(t.mergeList, [2]int32{a, b})
	}
	t.added = append([]AddedToken(nil), added...)
	sort.SliceStable(t.added, func(i, j int) bool { return t.added[i].ID < t.added[j].ID })
	for _, a := range t.added {
		t.idToken[a.ID] = a.Content
		t.idBytes[a.ID] = []byte(a.Content)
		t.tokenID[a.Content] = a.ID
	}
	t.allAdded = newAddedMatcher(t.added, true)
	t.ordinaryAdded = newAddedMatcher(t.added, false)

	pre, err := parsePreTokenizer(raw.PreTokenizer)
	if err != nil {
		return nil, err
	}
	t.pre = pre
	if err := checkDecoder(raw.Decoder); err != nil {
		return nil, err
	}
	if !isNull(raw.Normalizer) {
		// sugarme's normalizers (NFC, NFKC, Lowercase, Replace, …) are
		// correct and used as they are.
		norm, err := parseNormalizer(raw.Normalizer)
		if err != nil {
			return nil, fmt.Errorf("normalizer: %w", err)
		}
		t.norm = norm
	}
	return t, nil
}

// parsePreTokenizer turns the pre_tokenizer JSON into scanner steps. It must
// contain a ByteLevel stage: the model works on bytes.
func parsePreTokenizer(raw json.RawMessage) (*preTokenizer, error) {
	if isNull(raw) {
		return nil, errors.New("no pre_tokenizer: only byte-level BPE (a ByteLevel pre-tokenizer) is supported")
	}
	var pj preJSON
	if err := json.Unmarshal(raw, &pj); err != nil {
		return nil, fmt.Errorf("parse pre_tokenizer: %w", err)
	}
	p := &preTokenizer{}
	byteLevel := false
	var add func(pj preJSON) error
	add = func(pj preJSON) error {
		switch pj.Type {
		case "Sequence":
			for _, sub := range pj.PreTokenizers {
				if err := add(sub); err != nil {
					return err
				}
			}
		case "ByteLevel":
			byteLevel = true
			st := preStep{prefixSpace: pj.AddPrefixSpace, whole: true}
			if pj.UseRegex == nil || *pj.UseRegex {
				st = preStep{prefixSpace: pj.AddPrefixSpace, next: gpt2Next}
			}
			p.steps = append(p.steps, st)
		case "Split":
			if pj.Pattern == nil || (pj.Pattern.Regex == nil && pj.Pattern.String == nil) {
				return errors.New("split pre-tokenizer without a pattern")
			}
			if pj.Behavior != "Isolated" || pj.Invert {
				return fmt.Errorf("split behavior %q (invert=%v) is not supported, only Isolated", pj.Behavior, pj.Invert)
			}
			var st preStep
			var err error
			if pj.Pattern.Regex != nil {
				st, err = splitStep(*pj.Pattern.Regex, true)
			} else {
				st, err = splitStep(*pj.Pattern.String, false)
			}
			if err != nil {
				return err
			}
			p.steps = append(p.steps, st)
		default:
			return fmt.Errorf("pre-tokenizer %q is not supported", pj.Type)
		}
		return nil
	}
	if err := add(pj); err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	if !byteLevel {
		return nil, errors.New("pre_tokenizer has no ByteLevel stage: only byte-level BPE is supported")
	}
	return p, nil
}

func checkDecoder(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var d preJSON
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("parse decoder: %w", err)
	}
	if d.Type == "ByteLevel" {
		return nil
	}
	if d.Type == "Sequence" {
		for _, sub := range d.Decoders {
			if sub.Type == "ByteLevel" {
				return nil
			}
		}
	}
	return fmt.Errorf("decoder %q is not supported: only ByteLevel", d.Type)
}

// MarshalJSON writes the tokenizer as a Hugging Face tokenizer.json: the
// same top-level and model fields, in the same order, as tokenizers writes
// (vocab in id order, merges in rank order as "left right" strings, which
// every tokenizers version reads; byte-level tokens never contain a space).
func (t *Tokenizer) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(t.idToken)*24 + len(t.mergeList)*24)
	str := func(s string) {
		enc, _ := marshalNoEscape(s)
		b.Write(enc)
	}
	part := func(name string, raw json.RawMessage) error {
		b.WriteString("  ")
		str(name)
		b.WriteString(": ")
		if isNull(raw) {
			b.WriteString("null")
		} else {
			var ind bytes.Buffer
			if err := json.Indent(&ind, raw, "  ", "  "); err != nil {
				return fmt.Errorf("write %s: %w", name, err)
			}
			b.Write(ind.Bytes())
		}
		b.WriteString(",\n")
		return nil
	}
	b.WriteString("{\n  \"version\": \"1.0\",\n")
	if err := part("truncation", t.raw.Truncation); err != nil {
		return nil, err
	}
	if err := part("padding", t.raw.Padding); err != nil {
		return nil, err
	}
	b.WriteString("  \"added_tokens\": [")
	for i, a := range t.added {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "\n    {\n      \"id\": %d,\n      \"content\": ", a.ID)
		str(a.Content)
		fmt.Fprintf(&b, ",\n      \"single_word\": %t,\n      \"lstrip\": %t,\n      \"rstrip\": %t,\n      \"normalized\": %t,\n      \"special\": %t\n    }",
			a.SingleWord, a.LStrip, a.RStrip, a.Normalized, a.Special)
	}
	if len(t.added) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("],\n")
	for _, p := range []struct {
		name string
		raw  json.RawMessage
	}{{"normalizer", t.raw.Normalizer}, {"pre_tokenizer", t.raw.PreTokenizer}, {"post_processor", t.raw.PostProcessor}, {"decoder", t.raw.Decoder}} {
		if err := part(p.name, p.raw); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(&b, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": %t,\n    \"vocab\": {", t.bpe.ignoreMerges)
	first := true
	for id, tok := range t.modelToken {
		if tok == "" {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString("\n      ")
		str(tok)
		fmt.Fprintf(&b, ": %d", id)
	}
	b.WriteString("\n    },\n    \"merges\": [")
	for i, mg := range t.mergeList {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n      ")
		str(t.modelToken[mg[0]] + " " + t.modelToken[mg[1]])
	}
	b.WriteString("\n    ]\n  }\n}\n")
	return b.Bytes(), nil
}

func marshalNoEscape(s string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// Save writes the tokenizer.json atomically: a temporary file in the same
// directory, fsynced, then renamed over path.
func (t *Tokenizer) Save(path string) error {
	data, err := t.MarshalJSON()
	if err != nil {
		return fmt.Errorf("tokenizer: save %s: %w", path, err)
	}
	if err := atomicfs.WriteFile(path, data); err != nil {
		return fmt.Errorf("tokenizer: save: %w", err)
	}
	return nil
}

// normJSON is a normalizer entry of tokenizer.json.
type normJSON struct {
	Type        string     `json:"type"`
	Normalizers []normJSON `json:"normalizers"`
	Prepend     string     `json:"prepend"`
	Left        bool       `json:"left"`
	Right       bool       `json:"right"`
}

// parseNormalizer maps the normalizers byte-level tokenizers use onto
// sugarme's implementations. (sugarme's own pretrained.CreateNormalizer
// would pull in its whole model tree and more modules.)
func parseNormalizer(raw json.RawMessage) (normalizer.Normalizer, error) {
	var nj normJSON
	if err := json.Unmarshal(raw, &nj); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	var mk func(nj normJSON) (normalizer.Normalizer, error)
	mk = func(nj normJSON) (normalizer.Normalizer, error) {
		switch nj.Type {
		case "NFC":
			return normalizer.NewNFC(), nil
		case "NFD":
			return normalizer.NewNFD(), nil
		case "NFKC":
			return normalizer.NewNFKC(), nil
		case "NFKD":
			return normalizer.NewNFKD(), nil
		case "Lowercase":
			return normalizer.Lowercase(), nil
		case "StripAccents":
			return normalizer.NewStripAccents(), nil
		case "Strip":
			return normalizer.NewStrip(nj.Left, nj.Right), nil
		case "Prepend":
			return normalizer.NewPrepend(nj.Prepend), nil
		case "Sequence":
			list := make([]normalizer.Normalizer, 0, len(nj.Normalizers))
			for _, sub := range nj.Normalizers {
				n, err := mk(sub)
				if err != nil {
					return nil, err
				}
				list = append(list, n)
			}
			return normalizer.NewSequence(list), nil
		}
		return nil, fmt.Errorf("%q is not supported", nj.Type)
	}
	return mk(nj)
}

package tokenizer

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	sugar "github.com/sugarme/tokenizer"
)

// HF tokenizers (python3-tokenizers) is not packaged for this Debian
// release and PyPI is unreachable, so the written file is checked against
// the schema tokenizers writes and reads: the field names, types and
// nesting of a real GPT-2 / LLaMA 3 tokenizer.json.

func keys(m map[string]any) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

func wantKeys(t *testing.T, where string, m map[string]any, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := keys(m); !slices.Equal(got, want) {
		t.Errorf("%s: keys %v, want %v", where, got, want)
	}
}

func obj(t *testing.T, where string, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: %T, want an object", where, v)
	}
	return m
}

func wantByteLevel(t *testing.T, where string, m map[string]any) {
	t.Helper()
	wantKeys(t, where, m, "type", "add_prefix_space", "trim_offsets", "use_regex")
	if m["type"] != "ByteLevel" {
		t.Errorf("%s: type %v", where, m["type"])
	}
	for _, k := range []string{"add_prefix_space", "trim_offsets", "use_regex"} {
		if _, ok := m[k].(bool); !ok {
			t.Errorf("%s.%s: %T, want bool", where, k, m[k])
		}
	}
}

func checkSchema(t *testing.T, data []byte, style Style) {
	t.Helper()
	var top map[string]any
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "top", top, "version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder", "model")
	if top["version"] != "1.0" {
		t.Errorf("version %v", top["version"])
	}
	model := obj(t, "model", top["model"])
	wantKeys(t, "model", model, "type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges")
	if model["type"] != "BPE" {
		t.Errorf("model.type %v", model["type"])
	}
	vocab := obj(t, "model.vocab", model["vocab"])
	ids := map[int]string{}
	for tok, v := range vocab {
		f, ok := v.(float64)
		if !ok || f != float64(int(f)) {
			t.Fatalf("vocab[%q] = %v, want an integer", tok, v)
		}
		if prev, dup := ids[int(f)]; dup {
			t.Fatalf("id %d used by %q and %q", int(f), prev, tok)
		}
		ids[int(f)] = tok
	}
	merges, ok := model["merges"].([]any)
	if !ok || len(merges) == 0 {
		t.Fatalf("model.merges: %T", model["merges"])
	}
	for i, m := range merges {
		s, ok := m.(string)
		parts := strings.Split(s, " ")
		if !ok || len(parts) != 2 {
			t.Fatalf("merge %d: %v, want \"left right\"", i, m)
		}
		for _, p := range []string{parts[0], parts[1], parts[0] + parts[1]} {
			if _, ok := vocab[p]; !ok {
				t.Fatalf("merge %d %q: %q not in vocab", i, s, p)
			}
		}
	}
	added, ok := top["added_tokens"].([]any)
	if !ok {
		t.Fatalf("added_tokens: %T", top["added_tokens"])
	}
	for i, a := range added {
		m := obj(t, "added_tokens[]", a)
		wantKeys(t, "added_tokens[]", m, "id", "content", "single_word", "lstrip", "rstrip", "normalized", "special")
		id, _ := m["id"].(float64)
		if _, clash := ids[int(id)]; clash {
			t.Errorf("added token %d id %v collides with the vocab", i, id)
		}
		if m["special"] != true {
			t.Errorf("added token %v is not special", m["content"])
		}
	}
	wantByteLevel(t, "decoder", obj(t, "decoder", top["decoder"]))
	pre := obj(t, "pre_tokenizer", top["pre_tokenizer"])
	switch style {
	case StyleGPT2:
		wantByteLevel(t, "pre_tokenizer", pre)
	case StyleLlama3:
		wantKeys(t, "pre_tokenizer", pre, "type", "pretokenizers")
		seq, _ := pre["pretokenizers"].([]any)
		if pre["type"] != "Sequence" || len(seq) != 2 {
			t.Fatalf("pre_tokenizer: %v", pre)
		}
		split := obj(t, "split", seq[0])
		wantKeys(t, "split", split, "type", "pattern", "behavior", "invert")
		pat := obj(t, "split.pattern", split["pattern"])
		if pat["Regex"] != Llama3Pattern || split["behavior"] != "Isolated" || split["invert"] != false {
			t.Errorf("split: %v", split)
		}
		wantByteLevel(t, "pre_tokenizer[1]", obj(t, "bl", seq[1]))
	}
	// A second, independent reader of the same schema: sugarme's Config.
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := sugar.ConfigFromFile(path)
	if err != nil {
		t.Fatalf("sugarme cannot parse the file: %v", err)
	}
	if len(cfg.AddedTokens) != len(added) || cfg.Model["type"] != "BPE" {
		t.Errorf("sugarme reads %d added tokens, model %v", len(cfg.AddedTokens), cfg.Model["type"])
	}
}

func TestWrittenJSONSchema(t *testing.T) {
	t.Run("gpt2", func(t *testing.T) {
		checkSchema(t, newGPT2Fixture(t).json, StyleGPT2)
	})
	t.Run("llama3-trained", func(t *testing.T) {
		files := sharedPaths(t, "finance_sft/fpb_sentiment_train.jsonl")
		tk, err := Train(context.Background(), TrainOptions{VocabSize: 1000}, files...)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "tok.json")
		if err := tk.Save(path); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		checkSchema(t, data, StyleLlama3)
		// Save → Load → Save is a fixed point.
		back, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		again, err := back.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(data) {
			t.Error("Load then MarshalJSON changed the file")
		}
	})
}

func TestFromJSONRejects(t *testing.T) {
	base := `{"version":"1.0","added_tokens":[],"normalizer":null,"pre_tokenizer":%PRE%,"decoder":{"type":"ByteLevel"},"model":{"type":%TYPE%,"vocab":{"a":0,"b":1,"ab":2},"merges":%MERGES%}}`
	mk := func(pre, typ, merges string) []byte {
		r := strings.NewReplacer("%PRE%", pre, "%TYPE%", typ, "%MERGES%", merges)
		return []byte(r.Replace(base))
	}
	bl := `{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}`
	if _, err := FromJSON(mk(bl, `"BPE"`, `["a b"]`)); err != nil {
		t.Fatalf("valid file rejected: %v", err)
	}
	if _, err := FromJSON(mk(bl, `"BPE"`, `[["a","b"]]`)); err != nil {
		t.Fatalf("pair-form merges rejected: %v", err)
	}
	bad := map[string][]byte{
		"wordpiece":       mk(bl, `"WordPiece"`, `[]`),
		"no byte level":   mk(`{"type":"Whitespace"}`, `"BPE"`, `["a b"]`),
		"null pre":        mk(`null`, `"BPE"`, `["a b"]`),
		"unknown merge":   mk(bl, `"BPE"`, `["a c"]`),
		"bad merge":       mk(bl, `"BPE"`, `["ab"]`),
		"split behaviour": mk(`{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"a"},"behavior":"Removed","invert":false},`+bl+`]}`, `"BPE"`, `[]`),
		"not json":        []byte("{"),
	}
	for name, data := range bad {
		if _, err := FromJSON(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

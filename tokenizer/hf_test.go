package tokenizer

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// hfEncode encodes texts with Hugging Face tokenizers (the Rust library,
// through its Node bindings in testdata/hf) from the tokenizer.json at path.
// It skips when node or the bindings are not installed (.ci/run installs
// them with npm ci --prefix tokenizer/testdata/hf).
func hfEncode(t *testing.T, path string, texts []string) ([][]int32, []string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed: no Hugging Face tokenizers cross-check")
	}
	if _, err := os.Stat("testdata/hf/node_modules/tokenizers"); err != nil {
		t.Skip("Hugging Face tokenizers bindings not installed (npm ci --prefix tokenizer/testdata/hf)")
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "texts.json"), filepath.Join(dir, "out.json")
	raw, _ := json.Marshal(texts)
	if err := os.WriteFile(in, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "testdata/hf/check.js", path, in, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("Hugging Face tokenizers refused %s: %v\n%s", path, err, b)
	}
	var res []struct {
		IDs     []int32 `json:"ids"`
		Decoded string  `json:"decoded"`
	}
	raw, err = os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	ids := make([][]int32, len(res))
	dec := make([]string, len(res))
	for i, r := range res {
		ids[i], dec[i] = r.IDs, r.Decoded
	}
	return ids, dec
}

// TestHuggingFaceLoadsOurFiles: tokenizer.json files written by replayd —
// GPT-2 ranks and a LLaMA-3-style vocabulary trained here, with our special
// tokens — load in Hugging Face tokenizers and give the same ids and
// decodings as ours on real held-out text, odd Unicode and special tokens.
func TestHuggingFaceLoadsOurFiles(t *testing.T) {
	texts := append([]string(nil), fuzzCorpus(300)...)
	for _, f := range valFiles {
		docs := readTexts(t, f)
		texts = append(texts, docs[:min(60, len(docs))]...)
	}
	texts = append(texts, "<|begin_of_text|>hello<|eot_id|> and <|endoftext|> inside text")

	dir := t.TempDir()
	corpus := filepath.Join(dir, "corpus.txt")
	if err := os.WriteFile(corpus, []byte(strings.Join(texts, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	trained, err := Train(context.Background(), TrainOptions{VocabSize: 2000}, corpus)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		tok  *Tokenizer
	}{
		{"gpt2-ranks", newGPT2Fixture(t).ours},
		{"trained-llama3-style", trained},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".json")
			if err := c.tok.Save(path); err != nil {
				t.Fatal(err)
			}
			hfIDs, hfDec := hfEncode(t, path, texts)
			bad := 0
			for i, text := range texts {
				ours := c.tok.Encode(text)
				if !equalIDs(ours, hfIDs[i]) {
					bad++
					if bad <= 3 {
						t.Errorf("text %d %q: ours %v, HF %v", i, trunc(text), head(ours), head(hfIDs[i]))
					}
				}
				if got := c.tok.Decode(ours); got != hfDec[i] {
					t.Errorf("text %d: decode differs: ours %q, HF %q", i, trunc(got), trunc(hfDec[i]))
				}
			}
			if bad > 0 {
				t.Fatalf("%d of %d texts encode differently from Hugging Face tokenizers", bad, len(texts))
			}
		})
	}
}

func head(ids []int32) []int32 { return ids[:min(len(ids), 24)] }

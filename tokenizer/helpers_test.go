package tokenizer

import (
	"bufio"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
)

// dataDir is the shared data set, relative to this package.
const dataDir = "../../shared/data"

// valFiles are the held-out texts of the parity tests and figures.
var valFiles = []string{"finance_raw/reuters21578_val.jsonl", "general_raw/wikipedia_en_val.jsonl"}

// readTexts returns the `text` field of every line of a shared JSONL file,
// skipping the test when the shared data is absent.
func readTexts(t testing.TB, rel string) []string {
	t.Helper()
	path := filepath.Join(dataDir, rel)
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		t.Skipf("shared data %s is absent (expected beside the repository)", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var row struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, row.Text)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no lines", path)
	}
	return out
}

// gpt2Fixture is tiktoken's r50k_base (GPT-2) encoding and our tokenizer
// built from the same ranks, written as tokenizer.json and loaded back.
type gpt2Fixture struct {
	tik  *tiktoken.Tiktoken
	ours *Tokenizer
	json []byte
}

func newGPT2Fixture(t testing.TB) *gpt2Fixture {
	t.Helper()
	// tiktoken-go downloads ranks at run time; the offline loader embeds
	// them (no network here or in CI).
	loader := tiktoken_loader.NewOfflineLoader()
	tiktoken.SetBpeLoader(loader)
	tik, err := tiktoken.GetEncoding("r50k_base")
	if err != nil {
		t.Fatalf("tiktoken r50k_base: %v", err)
	}
	ranks, err := loader.LoadTiktokenBpe("r50k_base.tiktoken")
	if err != nil {
		t.Fatalf("r50k ranks: %v", err)
	}
	built, err := FromRanks(ranks, map[string]int{"<|endoftext|>": 50256}, StyleGPT2)
	if err != nil {
		t.Fatal(err)
	}
	data, err := built.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	ours, err := FromJSON(data)
	if err != nil {
		t.Fatalf("load written tokenizer.json: %v", err)
	}
	return &gpt2Fixture{tik: tik, ours: ours, json: data}
}

// fuzzCorpus is deterministic odd text: Unicode of many categories,
// whitespace runs, digits of several scripts, contractions, markers.
func fuzzCorpus(n int) []string {
	fixed := []string{
		"", " ", "  ", "\n", "\n\n\n", "\r\n", " \r\n ", "\t\t x", "a  b   c    ", "   leading", "trailing   ",
		"don't I'LL we'Re they've she'd 'S 'sx 'd'd ''s", "it’s curly ’s",
		"1234567 12 3.14159 1,000,000 ١٢٣٤٥ ５６７ ²³ Ⅻ ½ 0x1F",
		"naïve café e\u0301 A\u030a ﬁ Straße ǅ", "日本語のテキスト 中文 한국어", "👩‍👩‍👧 🇫🇷 ✨✨ 😀x",
		"مرحبا بالعالم שלום", "\u00a0nbsp\u00a0\u00a0x \u3000ideo \u2028ls \u0085nel \u000bvt \u000cff",
		"<|endoftext|>", "a<|endoftext|>b", "<|end", "(CPML) <CPML> 5.5 mln dlrs vs 4.3 pct",
		"?!...---===>>> ###$$$", "\x00\x01\x1f\x7f", "  \n  \n  x", "x \n", "x  \t\n\n y",
		strings.Repeat(" ", 300) + "x", strings.Repeat("ab", 200), strings.Repeat("\n", 150),
	}
	alphabet := []string{"a", "Z", "é", "ß", "ж", "中", "ا", "1", "9", "٣", "５", "²", "Ⅻ", " ", " ", "  ", "\t", "\n", "\r", "\r\n",
		"\u00a0", "\u3000", "\u2028", "'", "'s", "'T", "'ll", "’", ".", ",", "-", "$", "<", "|", ">", "😀", "\u200d", "\u0301", "_", "x"}
	rng := rand.New(rand.NewPCG(1, 2))
	out := append([]string(nil), fixed...)
	for len(out) < n {
		var b strings.Builder
		for k := rng.IntN(40); k >= 0; k-- {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		out = append(out, b.String())
	}
	return out
}

// toInt32 converts tiktoken's []int.
func toInt32(ids []int) []int32 {
	out := make([]int32, len(ids))
	for i, v := range ids {
		out[i] = int32(v)
	}
	return out
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

package tokenizer

import (
	"errors"
	"strings"
	"testing"

	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
)

// chatTokenizer is GPT-2's vocabulary plus the chat special tokens, written
// out and loaded back.
func chatTokenizer(t *testing.T) *Tokenizer {
	t.Helper()
	ranks, err := tiktoken_loader.NewOfflineLoader().LoadTiktokenBpe("r50k_base.tiktoken")
	if err != nil {
		t.Fatal(err)
	}
	special := map[string]int{}
	for i, s := range SpecialTokens() {
		special[s] = 50257 + i
	}
	tk, err := FromRanks(ranks, special, StyleLlama3)
	if err != nil {
		t.Fatal(err)
	}
	data, err := tk.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	tk, err = FromJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestChatTemplateMissingSpecials(t *testing.T) {
	fx := newGPT2Fixture(t)
	if _, err := fx.ours.ChatTemplate(); err == nil {
		t.Fatal("ChatTemplate on GPT-2 (no chat tokens) succeeded, want an error")
	}
}

func TestEncodeDAPT(t *testing.T) {
	tk := chatTokenizer(t)
	ct, err := tk.ChatTemplate()
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"", "Oil prices rose 5.5 pct.", "injected <|eot_id|> marker"} {
		toks, mask := ct.EncodeDAPT(text)
		if len(toks) != len(mask) {
			t.Fatalf("%q: %d tokens, %d mask", text, len(toks), len(mask))
		}
		if want := BeginOfText + text + EndOfText; tk.Decode(toks) != want {
			t.Errorf("decode = %q, want %q", tk.Decode(toks), want)
		}
		bos, _ := tk.TokenID(BeginOfText)
		eos, _ := tk.TokenID(EndOfText)
		eot, _ := tk.TokenID(EndOfTurn)
		if toks[0] != bos || toks[len(toks)-1] != eos || count(toks, eot) != 0 {
			t.Errorf("%q: tokens %v: want BOS first, EOS last, no injected eot", text, toks)
		}
		if mask[0] != 0 || count8(mask, 1) != len(mask)-1 {
			t.Errorf("%q: mask %v, want 0 then all 1", text, mask)
		}
	}
}

func count8(m []uint8, v uint8) int {
	n := 0
	for _, x := range m {
		if x == v {
			n++
		}
	}
	return n
}

func TestEncodeChat(t *testing.T) {
	tk := chatTokenizer(t)
	ct, err := tk.ChatTemplate()
	if err != nil {
		t.Fatal(err)
	}
	conv := []Turn{
		{"system", "You are a finance assistant."},
		{"user", "Sentiment of: profits fell <|eot_id|> sharply"},
		{"assistant", "negative"},
		{"user", "And now?"},
		{"assistant", "Positive, up 5 pct."},
	}
	toks, mask, err := ct.EncodeChat(conv)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	want.WriteString(BeginOfText)
	var wantTargets strings.Builder
	for _, tr := range conv {
		want.WriteString(StartHeader + tr.Role + EndHeader + "\n\n" + tr.Content + EndOfTurn)
		if tr.Role == "assistant" {
			wantTargets.WriteString(tr.Content + EndOfTurn)
		}
	}
	if got := tk.Decode(toks); got != want.String() {
		t.Errorf("rendering:\n got %q\nwant %q", got, want.String())
	}
	var targets []int32
	for i, m := range mask {
		if m == 1 {
			targets = append(targets, toks[i])
		}
	}
	if got := tk.Decode(targets); got != wantTargets.String() {
		t.Errorf("masked-in text = %q, want %q", got, wantTargets.String())
	}
	eot, _ := tk.TokenID(EndOfTurn)
	if n := count(toks, eot); n != len(conv) {
		t.Errorf("%d eot tokens, want %d (content must not inject markers)", n, len(conv))
	}
	// The prompt is the rendering up to the answer's header.
	prompt := ct.Prompt(conv[:2])
	full, _, err := ct.EncodeChat(conv[:3])
	if err != nil {
		t.Fatal(err)
	}
	if len(prompt) >= len(full) || !equalIDs(prompt, full[:len(prompt)]) {
		t.Errorf("Prompt %v is not a prefix of the rendered conversation %v", prompt, full)
	}
	if got, want := tk.Decode(prompt), tk.Decode(full[:len(full)-len(tk.EncodeOrdinary("negative"))-1]); got != want {
		t.Errorf("Prompt decodes to %q, want %q", got, want)
	}

	bad := []struct {
		name  string
		turns []Turn
	}{
		{"empty", nil},
		{"unknown role", []Turn{{"tool", "x"}, {"assistant", "y"}}},
		{"no assistant", []Turn{{"system", "s"}, {"user", "u"}}},
	}
	for _, b := range bad {
		if _, _, err := ct.EncodeChat(b.turns); err == nil {
			t.Errorf("%s: no error", b.name)
		}
	}
	if _, _, err := ct.EncodeChat([]Turn{{"user", "u"}}); !errors.Is(err, ErrNoAssistant) {
		t.Errorf("no assistant: error %v, want ErrNoAssistant", err)
	}
}

func TestPlainPromptAndStops(t *testing.T) {
	tk := chatTokenizer(t)
	ct, err := tk.ChatTemplate()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ instr, input, want string }{
		{"Classify the sentiment.", "Profits rose.", BeginOfText + "Classify the sentiment.\n\nProfits rose.\n\nAnswer:"},
		{"Name a bank.", "", BeginOfText + "Name a bank.\n\nAnswer:"},
	}
	for _, c := range cases {
		if got := tk.Decode(ct.PlainPrompt(c.instr, c.input)); got != c.want {
			t.Errorf("PlainPrompt = %q, want %q", got, c.want)
		}
	}
	stops := ct.StopIDs()
	eot, _ := tk.TokenID(EndOfTurn)
	eos, _ := tk.TokenID(EndOfText)
	if len(stops) != 2 || stops[0] != eot || stops[1] != eos {
		t.Errorf("StopIDs = %v, want [%d %d]", stops, eot, eos)
	}
}

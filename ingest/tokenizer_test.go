package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"replayd/ingest/internal/gpt2chat"
	"replayd/tokenizer"
)

// sharedData is the shared data set, relative to this package.
const sharedData = "../../shared/data"

// headLines writes the first n lines of a shared data file to dir.
func headLines(t *testing.T, dir, rel string, n int) (string, [][]byte) {
	t.Helper()
	f, err := os.Open(filepath.Join(sharedData, rel))
	if err != nil {
		t.Skipf("shared data absent (%v): skipping the real-data test", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	var lines [][]byte
	for len(lines) < n && sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(rel))
	if err := os.WriteFile(out, append(bytes.Join(lines, []byte("\n")), '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	return out, lines
}

// TestRealDataRealTokenizer publishes slices of the shared data with the
// publisher, reads them back through the real chat template and checks
// that the loss mask selects exactly the answer (SFT) or the document
// (DAPT): decoding the masked tokens gives back the source text.
func TestRealDataRealTokenizer(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	dir := t.TempDir()
	inputs := []struct {
		rel    string
		kind   Kind
		domain string
		n      int
	}{
		{"finance_sft/fpb_sentiment_train.jsonl", KindSFT, "fin", 150},
		{"general_sft/dolly_5k.jsonl", KindSFT, "gen", 150}, // no ids, empty inputs
		{"finance_raw/reuters21578_train.jsonl", KindDAPT, "fin", 60},
		{"general_raw/wikipedia_en_train.jsonl", KindDAPT, "gen", 10},
	}
	type src struct {
		Text, Instruction, Input, Output string
	}
	byID := map[string]src{}
	var paths []string
	for _, in := range inputs {
		p, lines := headLines(t, dir, in.rel, in.n)
		paths = append(paths, p)
		for _, l := range lines {
			var s struct {
				ID string
				src
			}
			if err := json.Unmarshal(l, &s); err != nil {
				t.Fatal(err)
			}
			if s.ID == "" {
				s.ID = ContentID(l)
			}
			byID[s.ID] = s.src
		}
	}
	ct, err := gpt2chat.New()
	if err != nil {
		t.Fatal(err)
	}
	c := embedded(t, ctx, t.TempDir(), 0)
	defer c.Close()
	l, err := OpenLog(ctx, c, StreamOptions{}, ct)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i, in := range inputs {
		rep, err := PublishFiles(ctx, c.NC, paths[i:i+1], nil, PublishOptions{Kind: in.kind, Domain: in.domain})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Published != in.n || rep.Rejected != 0 {
			t.Fatalf("%s: report %+v", in.rel, rep)
		}
		total += in.n
	}
	r, err := l.Read(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := readUntil(t, ctx, r, uint64(total))
	if len(got) != total {
		t.Fatalf("%d samples, want %d", len(got), total)
	}
	tok := ct.Tokenizer()
	for _, s := range got {
		want, ok := byID[s.ID]
		if !ok {
			t.Fatalf("sample %d: unknown id %q", s.Seq, s.ID)
		}
		var masked []int32
		for i, m := range s.LossMask {
			if m == 1 {
				masked = append(masked, s.Tokens[i])
			}
		}
		all := tok.Decode(s.Tokens)
		switch s.Kind {
		case KindSFT:
			if got := tok.Decode(masked); got != want.Output+tokenizer.EndOfTurn {
				t.Fatalf("seq %d (%v): masked tokens decode to %q, want the output %q", s.Seq, s.Bucket, got, want.Output)
			}
			user := want.Instruction
			if want.Input != "" {
				user += "\n\n" + want.Input
			}
			if !strings.Contains(all, user+tokenizer.EndOfTurn) {
				t.Fatalf("seq %d: prompt %q not in %q", s.Seq, user, all)
			}
		case KindDAPT:
			if got := tok.Decode(masked); got != want.Text+tokenizer.EndOfText {
				t.Fatalf("seq %d: DAPT targets decode to %.80q…", s.Seq, got)
			}
		}
	}
}

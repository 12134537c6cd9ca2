package ingest

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecode(t *testing.T) {
	lim := Limits{MaxBytes: 2048, MaxTextChars: 100, MaxMessages: 4}
	tests := []struct {
		name   string
		kind   Kind
		in     string
		reason Reason // "" = valid
		check  func(t *testing.T, r Record)
	}{
		{"dapt ok", KindDAPT, `{"id":"a1","text":"Shares rose.","source":"x","topics":[]}`, "", func(t *testing.T, r Record) {
			if r.ID != "a1" || r.Text != "Shares rose." {
				t.Errorf("got %+v", r)
			}
		}},
		{"dapt without id", KindDAPT, `{"text":"x"}`, "", func(t *testing.T, r Record) {
			if r.ID != "" {
				t.Errorf("id %q", r.ID)
			}
		}},
		{"sft instruction", KindSFT, `{"id":"s","instruction":"Classify.","input":"Profit up.","output":"positive","task":"fpb","meta":{"k":"v"}}`, "", func(t *testing.T, r Record) {
			want := "Classify.\n\nProfit up."
			if len(r.Turns) != 2 || r.Turns[0].Role != "user" || r.Turns[0].Content != want || r.Turns[1].Role != "assistant" || r.Turns[1].Content != "positive" {
				t.Errorf("turns %+v", r.Turns)
			}
			if r.Task != "fpb" || r.Meta["k"] != "v" {
				t.Errorf("task/meta %q %v", r.Task, r.Meta)
			}
		}},
		{"sft empty input omitted", KindSFT, `{"instruction":"Say hi.","input":"","output":"hi"}`, "", func(t *testing.T, r Record) {
			if r.Turns[0].Content != "Say hi." {
				t.Errorf("user %q", r.Turns[0].Content)
			}
		}},
		{"sft messages", KindSFT, `{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Q"},{"role":"assistant","content":"A"}]}`, "", func(t *testing.T, r Record) {
			if len(r.Turns) != 3 || r.Turns[2].Content != "A" {
				t.Errorf("turns %+v", r.Turns)
			}
		}},
		{"invalid utf8", KindDAPT, "{\"text\":\"a\xff\"}", ReasonInvalidUTF8, nil},
		{"invalid json", KindDAPT, `{"text":"a"`, ReasonInvalidJSON, nil},
		{"trailing garbage", KindDAPT, `{"text":"a"} x`, ReasonInvalidJSON, nil},
		{"array", KindDAPT, `["text"]`, ReasonInvalidJSON, nil},
		{"null", KindDAPT, `null`, ReasonInvalidJSON, nil},
		{"empty message", KindDAPT, ``, ReasonInvalidJSON, nil},
		{"text wrong type", KindDAPT, `{"text":5}`, ReasonBadField, nil},
		{"meta not strings", KindDAPT, `{"text":"a","meta":{"k":1}}`, ReasonBadField, nil},
		{"empty id", KindDAPT, `{"id":"","text":"a"}`, ReasonBadField, nil},
		{"id with space", KindDAPT, `{"id":"a b","text":"a"}`, ReasonBadField, nil},
		{"missing text", KindDAPT, `{"id":"x"}`, ReasonMissingField, nil},
		{"sft on dapt", KindDAPT, `{"instruction":"a","output":"b"}`, ReasonMissingField, nil},
		{"dapt on sft", KindSFT, `{"text":"a"}`, ReasonMissingField, nil},
		{"missing output", KindSFT, `{"instruction":"a"}`, ReasonMissingField, nil},
		{"missing role", KindSFT, `{"messages":[{"content":"a"}]}`, ReasonMissingField, nil},
		{"empty text", KindDAPT, `{"text":"  \n"}`, ReasonEmpty, nil},
		{"empty output", KindSFT, `{"instruction":"a","output":""}`, ReasonEmpty, nil},
		{"empty messages", KindSFT, `{"messages":[]}`, ReasonEmpty, nil},
		{"empty content", KindSFT, `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":""}]}`, ReasonEmpty, nil},
		{"both forms", KindSFT, `{"instruction":"a","output":"b","messages":[{"role":"user","content":"a"}]}`, ReasonBadField, nil},
		{"bad role", KindSFT, `{"messages":[{"role":"user","content":"a"},{"role":"bot","content":"b"}]}`, ReasonBadRole, nil},
		{"no assistant", KindSFT, `{"messages":[{"role":"user","content":"a"}]}`, ReasonBadRole, nil},
		{"assistant first", KindSFT, `{"messages":[{"role":"assistant","content":"a"},{"role":"user","content":"b"}]}`, ReasonBadRole, nil},
		{"late system", KindSFT, `{"messages":[{"role":"user","content":"a"},{"role":"system","content":"s"},{"role":"assistant","content":"b"}]}`, ReasonBadRole, nil},
		{"oversize bytes", KindDAPT, `{"text":"` + strings.Repeat("a", 2100) + `"}`, ReasonOversize, nil},
		{"oversize chars", KindDAPT, `{"text":"` + strings.Repeat("é", 101) + `"}`, ReasonOversize, nil},
		{"chars at limit", KindDAPT, `{"text":"` + strings.Repeat("é", 100) + `"}`, "", nil},
		{"oversize input", KindSFT, `{"instruction":"a","input":"` + strings.Repeat("b", 101) + `","output":"c"}`, ReasonOversize, nil},
		{"too many messages", KindSFT, `{"messages":[` + strings.Repeat(`{"role":"user","content":"a"},`, 4) + `{"role":"assistant","content":"b"}]}`, ReasonOversize, nil},
		{"unknown kind", Kind(7), `{"text":"a"}`, ReasonUnknownKind, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := lim.Decode(tc.kind, []byte(tc.in))
			if got := ReasonOf(err); got != tc.reason {
				t.Fatalf("reason %q (err %v), want %q", got, err, tc.reason)
			}
			if err != nil && tc.reason == "" {
				t.Fatalf("unexpected non-reject error %v", err)
			}
			if tc.check != nil && err == nil {
				tc.check(t, r)
			}
		})
	}
}

func TestSubjectsParse(t *testing.T) {
	s := Subjects{Domains: Domains{"fin": false, "gen": true, "law": false}}
	tests := []struct {
		subject string
		reason  Reason
		kind    Kind
		domain  string
		bucket  Bucket
	}{
		{"replayd.ingest.dapt.fin", "", KindDAPT, "fin", BucketDAPTDomain},
		{"replayd.ingest.dapt.gen", "", KindDAPT, "gen", BucketDAPTGeneral},
		{"replayd.ingest.sft.fin", "", KindSFT, "fin", BucketSFTDomain},
		{"replayd.ingest.sft.gen", "", KindSFT, "gen", BucketSFTGeneral},
		{"replayd.ingest.sft.law", "", KindSFT, "law", BucketSFTDomain},
		{"replayd.ingest.pretrain.fin", ReasonUnknownKind, 0, "", 0},
		{"replayd.ingest.dapt.med", ReasonUnknownSubject, 0, "", 0},
		{"replayd.ingest.dapt", ReasonUnknownSubject, 0, "", 0},
		{"replayd.ingest.dapt.fin.x", ReasonUnknownSubject, 0, "", 0},
		{"other.dapt.fin", ReasonUnknownSubject, 0, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.subject, func(t *testing.T) {
			k, d, b, err := s.Parse(tc.subject)
			if ReasonOf(err) != tc.reason {
				t.Fatalf("err %v, want reason %q", err, tc.reason)
			}
			if err == nil && (k != tc.kind || d != tc.domain || b != tc.bucket) {
				t.Fatalf("got %v %q %v", k, d, b)
			}
			if err == nil && s.Subject(k, d) != tc.subject {
				t.Fatalf("Subject round trip: %q", s.Subject(k, d))
			}
		})
	}
	if got := s.BucketSubjects(BucketSFTDomain); !slices.Equal(got, []string{"replayd.ingest.sft.fin", "replayd.ingest.sft.law"}) {
		t.Errorf("BucketSubjects = %v", got)
	}
}

// FuzzDecode checks that the validator never panics, that every rejection
// carries a reason from the closed set, and that every accepted record
// honours the schema's guarantees.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","text":"hello"}`,
		`{"instruction":"a","input":"b","output":"c","task":"t","meta":{"k":"v"}}`,
		`{"messages":[{"role":"system","content":"s"},{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}`,
		`{"text":5}`, `null`, "{\"text\":\"\xff\"}", `{"messages":null,"instruction":"x","output":"y"}`,
	} {
		f.Add(uint8(0), []byte(s))
		f.Add(uint8(1), []byte(s))
	}
	lim := Limits{MaxBytes: 4096, MaxTextChars: 512, MaxMessages: 8}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		k := Kind(kind % 3)
		r, err := lim.Decode(k, data)
		if err != nil {
			if !slices.Contains(Reasons, ReasonOf(err)) {
				t.Fatalf("rejection without a known reason: %v", err)
			}
			return
		}
		if !utf8.Valid(data) || len(data) > lim.MaxBytes || k > KindSFT {
			t.Fatalf("accepted invalid input")
		}
		switch k {
		case KindDAPT:
			if strings.TrimSpace(r.Text) == "" || utf8.RuneCountInString(r.Text) > lim.MaxTextChars {
				t.Fatalf("accepted bad text %q", r.Text)
			}
		case KindSFT:
			if len(r.Turns) < 2 || len(r.Turns) > lim.MaxMessages {
				t.Fatalf("accepted %d turns", len(r.Turns))
			}
			hasAssistant := false
			for _, tr := range r.Turns {
				if strings.TrimSpace(tr.Content) == "" || !utf8.ValidString(tr.Content) {
					t.Fatalf("accepted empty or invalid content %q", tr.Content)
				}
				hasAssistant = hasAssistant || tr.Role == "assistant"
			}
			if !hasAssistant {
				t.Fatalf("accepted a conversation without an assistant turn")
			}
		}
	})
}

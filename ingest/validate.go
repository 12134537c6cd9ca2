package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"replayd/tokenizer"
)

// Reason is why a message was rejected. It is the last token of the
// dead-letter subject (replayd.dlq.<reason>) and a metrics label.
type Reason string

// The rejection reasons. The set is closed so that dashboards and alerts can
// enumerate it; Detail on RejectError carries the specifics.
const (
	// ReasonInvalidUTF8 is a message that is not valid UTF-8.
	ReasonInvalidUTF8 Reason = "invalid_utf8"
	// ReasonInvalidJSON is a message that is not one JSON object.
	ReasonInvalidJSON Reason = "invalid_json"
	// ReasonBadField is a known field with the wrong JSON type or shape
	// (e.g. "text": 5, "meta": {"k": 1}, both "messages" and "instruction").
	ReasonBadField Reason = "bad_field"
	// ReasonMissingField is a required field that is absent.
	ReasonMissingField Reason = "missing_field"
	// ReasonEmpty is a required text field that is empty or whitespace only.
	ReasonEmpty Reason = "empty"
	// ReasonOversize is a message over MaxBytes, a field over MaxTextChars
	// or a conversation over MaxMessages.
	ReasonOversize Reason = "oversize"
	// ReasonUnknownKind is a subject whose kind token is not dapt or sft.
	ReasonUnknownKind Reason = "unknown_kind"
	// ReasonUnknownSubject is a subject outside replayd.ingest.<kind>.<domain>
	// or with a domain that is not configured.
	ReasonUnknownSubject Reason = "unknown_subject"
	// ReasonBadRole is a conversation turn with a role other than system,
	// user or assistant, a misplaced system turn, or no assistant turn.
	ReasonBadRole Reason = "bad_role"
	// ReasonTokenizeFailed is a sample the Encoder refused or turned into
	// no tokens.
	ReasonTokenizeFailed Reason = "tokenize_failed"
)

// Reasons lists every rejection reason, for metrics pre-registration.
var Reasons = []Reason{
	ReasonInvalidUTF8, ReasonInvalidJSON, ReasonBadField, ReasonMissingField,
	ReasonEmpty, ReasonOversize, ReasonUnknownKind, ReasonUnknownSubject,
	ReasonBadRole, ReasonTokenizeFailed,
}

// RejectError is a validation failure: a reason from the closed set and a
// human-readable detail.
type RejectError struct {
	Reason Reason
	Detail string
}

func (e *RejectError) Error() string { return string(e.Reason) + ": " + e.Detail }

func reject(r Reason, format string, args ...any) *RejectError {
	return &RejectError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the rejection reason of err, or "" when err is not a
// RejectError.
func ReasonOf(err error) Reason {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

// Limits bound what a single wire sample may contain. Zero fields take the
// defaults of DefaultLimits.
type Limits struct {
	// MaxBytes is the largest accepted message, in bytes. NATS refuses
	// payloads above the server's max_payload (1 MiB by default) anyway;
	// this limit lets the reader and the publisher reject earlier and
	// with a reason.
	MaxBytes int `mapstructure:"max_bytes" json:"max_bytes"`
	// MaxTextChars is the largest text field (text, instruction, input,
	// output, one message content), in Unicode code points.
	MaxTextChars int `mapstructure:"max_text_chars" json:"max_text_chars"`
	// MaxMessages is the most turns in a "messages" conversation.
	MaxMessages int `mapstructure:"max_messages" json:"max_messages"`
	// MaxIDBytes is the longest accepted id.
	MaxIDBytes int `mapstructure:"max_id_bytes" json:"max_id_bytes"`
}

// DefaultLimits are the limits used for zero fields. MaxBytes is 1 MiB,
// NATS's default max_payload; MaxTextChars fits the longest shared-data
// documents (Wikipedia articles cut at 20k chars) with room to spare.
var DefaultLimits = Limits{MaxBytes: 1 << 20, MaxTextChars: 200_000, MaxMessages: 64, MaxIDBytes: 256}

// withDefaults returns l with zero fields replaced by DefaultLimits.
func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	if l.MaxTextChars <= 0 {
		l.MaxTextChars = DefaultLimits.MaxTextChars
	}
	if l.MaxMessages <= 0 {
		l.MaxMessages = DefaultLimits.MaxMessages
	}
	if l.MaxIDBytes <= 0 {
		l.MaxIDBytes = DefaultLimits.MaxIDBytes
	}
	return l
}

// Record is a decoded, validated wire sample before tokenization.
type Record struct {
	// ID is the "id" field, empty when the producer gave none.
	ID string
	// Kind is the kind the sample was validated as.
	Kind Kind
	// Text is the document of a DAPT sample.
	Text string
	// Turns is the conversation of an SFT sample; the instruction form is
	// converted to a user turn and an assistant turn.
	Turns []tokenizer.Turn
	// Task is the optional task name.
	Task string
	// Meta is the optional string map.
	Meta map[string]string
}

// wireTurn and wireSample mirror the JSON schema. Pointers tell an absent
// field from an empty one. Unknown fields are ignored on purpose: the
// shared data sets carry source, date, topics, tokens, tags... and producers
// may add provenance without coordinating with the daemon.
type wireTurn struct {
	Role    *string `json:"role"`
	Content *string `json:"content"`
}

type wireSample struct {
	ID          *string           `json:"id"`
	Text        *string           `json:"text"`
	Instruction *string           `json:"instruction"`
	Input       *string           `json:"input"`
	Output      *string           `json:"output"`
	Messages    []wireTurn        `json:"messages"`
	Task        *string           `json:"task"`
	Meta        map[string]string `json:"meta"`
}

// Decode validates data as a wire sample of kind k. It returns a
// *RejectError for every invalid input; it never panics.
func (l Limits) Decode(k Kind, data []byte) (Record, error) {
	l = l.withDefaults()
	if len(data) > l.MaxBytes {
		return Record{}, reject(ReasonOversize, "message is %d bytes, limit %d", len(data), l.MaxBytes)
	}
	// encoding/json silently replaces invalid UTF-8 with U+FFFD, so the
	// check must come first to keep corrupted text out of training.
	if !utf8.Valid(data) {
		return Record{}, reject(ReasonInvalidUTF8, "invalid UTF-8 at byte %d", invalidUTF8At(data))
	}
	if k != KindDAPT && k != KindSFT {
		return Record{}, reject(ReasonUnknownKind, "kind %s", k)
	}
	// json.Unmarshal accepts null into a struct; only an object is a sample.
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return Record{}, reject(ReasonInvalidJSON, "not a JSON object")
	}
	var w wireSample
	if err := json.Unmarshal(data, &w); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return Record{}, reject(ReasonBadField, "field %q: got JSON %s, want %s", te.Field, te.Value, te.Type)
		case errors.As(err, &te):
			return Record{}, reject(ReasonInvalidJSON, "not a JSON object: got JSON %s", te.Value)
		default:
			return Record{}, reject(ReasonInvalidJSON, "%v", err)
		}
	}
	r := Record{Kind: k, Meta: w.Meta}
	if w.ID != nil {
		if *w.ID == "" || len(*w.ID) > l.MaxIDBytes || strings.ContainsAny(*w.ID, " \t\r\n") {
			return Record{}, reject(ReasonBadField, "id must be 1..%d bytes without whitespace", l.MaxIDBytes)
		}
		r.ID = *w.ID
	}
	if w.Task != nil {
		r.Task = *w.Task
	}
	if k == KindDAPT {
		if w.Text == nil {
			hint := ""
			if w.Instruction != nil || w.Messages != nil {
				hint = " (an SFT sample on a dapt subject?)"
			}
			return Record{}, reject(ReasonMissingField, "text%s", hint)
		}
		if err := l.checkText("text", *w.Text); err != nil {
			return Record{}, err
		}
		r.Text = *w.Text
		return r, nil
	}
	// SFT: either the instruction form or the messages form, not both, so
	// that no content is silently dropped.
	switch {
	case w.Messages != nil && (w.Instruction != nil || w.Output != nil):
		return Record{}, reject(ReasonBadField, "both messages and instruction/output")
	case w.Messages != nil:
		turns, err := l.checkMessages(w.Messages)
		if err != nil {
			return Record{}, err
		}
		r.Turns = turns
		return r, nil
	}
	if w.Instruction == nil {
		if w.Text != nil {
			return Record{}, reject(ReasonMissingField, "instruction (a DAPT sample on an sft subject?)")
		}
		return Record{}, reject(ReasonMissingField, "instruction or messages")
	}
	if w.Output == nil {
		return Record{}, reject(ReasonMissingField, "output")
	}
	if err := l.checkText("instruction", *w.Instruction); err != nil {
		return Record{}, err
	}
	if err := l.checkText("output", *w.Output); err != nil {
		return Record{}, err
	}
	user := *w.Instruction
	if w.Input != nil && *w.Input != "" {
		if n := utf8.RuneCountInString(*w.Input); n > l.MaxTextChars {
			return Record{}, reject(ReasonOversize, "input is %d chars, limit %d", n, l.MaxTextChars)
		}
		user += "\n\n" + *w.Input
	}
	r.Turns = []tokenizer.Turn{{Role: "user", Content: user}, {Role: "assistant", Content: *w.Output}}
	return r, nil
}

// checkText rejects an empty (whitespace-only) or over-long field.
func (l Limits) checkText(name, s string) error {
	if strings.TrimSpace(s) == "" {
		return reject(ReasonEmpty, "%s is empty", name)
	}
	if len(s) > l.MaxTextChars { // bytes ≥ runes: count only when it can matter
		if n := utf8.RuneCountInString(s); n > l.MaxTextChars {
			return reject(ReasonOversize, "%s is %d chars, limit %d", name, n, l.MaxTextChars)
		}
	}
	return nil
}

// checkMessages validates a conversation: known roles, an optional leading
// system turn, a user turn before the first assistant turn, at least one
// assistant turn (otherwise nothing would be trained on) and no empty content.
func (l Limits) checkMessages(ms []wireTurn) ([]tokenizer.Turn, error) {
	if len(ms) == 0 {
		return nil, reject(ReasonEmpty, "messages is empty")
	}
	if len(ms) > l.MaxMessages {
		return nil, reject(ReasonOversize, "%d messages, limit %d", len(ms), l.MaxMessages)
	}
	turns := make([]tokenizer.Turn, len(ms))
	assistants, users := 0, 0
	for i, m := range ms {
		if m.Role == nil {
			return nil, reject(ReasonMissingField, "messages[%d].role", i)
		}
		if m.Content == nil {
			return nil, reject(ReasonMissingField, "messages[%d].content", i)
		}
		switch *m.Role {
		case "system":
			if i != 0 {
				return nil, reject(ReasonBadRole, "messages[%d]: system turn after the first turn", i)
			}
		case "user":
			users++
		case "assistant":
			if users == 0 {
				return nil, reject(ReasonBadRole, "messages[%d]: assistant turn before any user turn", i)
			}
			assistants++
		default:
			return nil, reject(ReasonBadRole, "messages[%d]: role %q (want system, user or assistant)", i, *m.Role)
		}
		if err := l.checkText(fmt.Sprintf("messages[%d].content", i), *m.Content); err != nil {
			return nil, err
		}
		turns[i] = tokenizer.Turn{Role: *m.Role, Content: *m.Content}
	}
	if assistants == 0 {
		return nil, reject(ReasonBadRole, "no assistant turn")
	}
	return turns, nil
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

package tokenizer

import (
	"errors"
	"fmt"
)

// The special tokens of the chat template (LLaMA 3's names).
const (
	BeginOfText = "<|begin_of_text|>"
	EndOfText   = "<|end_of_text|>"
	StartHeader = "<|start_header_id|>"
	EndHeader   = "<|end_header_id|>"
	EndOfTurn   = "<|eot_id|>"
	Pad         = "<|pad|>"
)

// SpecialTokens are the special tokens Train adds, in id order after the
// learned vocabulary.
func SpecialTokens() []string {
	return []string{BeginOfText, EndOfText, StartHeader, EndHeader, EndOfTurn, Pad}
}

// ChatTemplate renders documents and conversations into ids and loss masks
// with LLaMA 3's chat layout. It implements ingest.Encoder, and the
// evaluator renders prompts with the same object so that training and
// evaluation see identical token streams. Safe for concurrent use.
type ChatTemplate struct {
	tok                                   *Tokenizer
	bot, eot, startHeader, endHeader, eoT int32
	// roleHeader is the encoding of "{role}" + <|end_header_id|> + "\n\n"
	// per role, precomputed.
	roleHeader map[string][]int32
}

// ChatTemplate returns the chat template over t. It fails if one of the
// template's special tokens (BeginOfText … EndOfTurn) is missing.
func (t *Tokenizer) ChatTemplate() (*ChatTemplate, error) {
	c := &ChatTemplate{tok: t, roleHeader: make(map[string][]int32, 3)}
	for _, p := range []struct {
		name string
		dst  *int32
	}{{BeginOfText, &c.bot}, {EndOfText, &c.eot}, {StartHeader, &c.startHeader}, {EndHeader, &c.endHeader}, {EndOfTurn, &c.eoT}} {
		id, ok := t.TokenID(p.name)
		if !ok {
			return nil, fmt.Errorf("tokenizer: chat template: special token %s missing", p.name)
		}
		*p.dst = id
	}
	for _, role := range []string{"system", "user", "assistant"} {
		h := t.EncodeOrdinary(role)
		h = append(h, c.endHeader)
		h = t.AppendEncodeOrdinary(h, "\n\n")
		c.roleHeader[role] = h
	}
	return c, nil
}

// Tokenizer returns the tokenizer the template encodes with.
func (c *ChatTemplate) Tokenizer() *Tokenizer { return c.tok }

// EncodeDAPT returns <|begin_of_text|> + text + <|end_of_text|>, with text
// encoded ordinarily (markers in raw data stay text), and a mask of 1 on
// every token but the first: each token after BOS is a training target.
func (c *ChatTemplate) EncodeDAPT(text string) (tokens []int32, mask []uint8) {
	tokens = make([]int32, 1, len(text)/3+2)
	tokens[0] = c.bot
	tokens = c.tok.AppendEncodeOrdinary(tokens, text)
	tokens = append(tokens, c.eot)
	mask = make([]uint8, len(tokens))
	for i := 1; i < len(mask); i++ {
		mask[i] = 1
	}
	return tokens, mask
}

// ErrNoAssistant is returned for a conversation without an assistant turn:
// it has nothing to train on.
var ErrNoAssistant = errors.New("conversation has no assistant turn")

// EncodeChat renders
//
//	<|begin_of_text|>{for each turn: <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>}
//
// with contents encoded ordinarily. The mask is 1 only on assistant content
// and the <|eot_id|> that closes it.
func (c *ChatTemplate) EncodeChat(turns []Turn) (tokens []int32, mask []uint8, err error) {
	if len(turns) == 0 {
		return nil, nil, errors.New("tokenizer: empty conversation")
	}
	hasAssistant := false
	size := 1
	for i, tr := range turns {
		if _, ok := c.roleHeader[tr.Role]; !ok {
			return nil, nil, fmt.Errorf("tokenizer: turn %d: unknown role %q (want system, user or assistant)", i, tr.Role)
		}
		hasAssistant = hasAssistant || tr.Role == "assistant"
		size += len(tr.Content)/3 + 8
	}
	if !hasAssistant {
		return nil, nil, fmt.Errorf("tokenizer: %w", ErrNoAssistant)
	}
	tokens = make([]int32, 0, size)
	mask = make([]uint8, 0, size)
	tokens = append(tokens, c.bot)
	mask = append(mask, 0)
	for _, tr := range turns {
		tokens = c.appendHeader(tokens, tr.Role)
		var m uint8
		if tr.Role == "assistant" {
			m = 1
		}
		for len(mask) < len(tokens) {
			mask = append(mask, 0)
		}
		tokens = c.tok.AppendEncodeOrdinary(tokens, tr.Content)
		tokens = append(tokens, c.eoT)
		for len(mask) < len(tokens) {
			mask = append(mask, m)
		}
	}
	return tokens, mask, nil
}

func (c *ChatTemplate) appendHeader(dst []int32, role string) []int32 {
	dst = append(dst, c.startHeader)
	return append(dst, c.roleHeader[role]...)
}

// Prompt renders turns as EncodeChat does and then opens the assistant's
// answer (<|start_header_id|>assistant<|end_header_id|>\n\n), for greedy
// generation. Turns with an unknown role are rendered with their role
// name as is (the evaluator builds its own turns).
func (c *ChatTemplate) Prompt(turns []Turn) []int32 {
	tokens := []int32{c.bot}
	for _, tr := range turns {
		if _, ok := c.roleHeader[tr.Role]; ok {
			tokens = c.appendHeader(tokens, tr.Role)
		} else {
			tokens = append(tokens, c.startHeader)
			tokens = c.tok.AppendEncodeOrdinary(tokens, tr.Role)
			tokens = append(tokens, c.endHeader)
			tokens = c.tok.AppendEncodeOrdinary(tokens, "\n\n")
		}
		tokens = c.tok.AppendEncodeOrdinary(tokens, tr.Content)
		tokens = append(tokens, c.eoT)
	}
	return c.appendHeader(tokens, "assistant")
}

// PlainPrompt renders an instruction without the chat template, for models
// evaluated before instruction tuning:
//
//	<|begin_of_text|>{instruction}\n\n{input}\n\nAnswer:
//
// where the "{input}\n\n" part is left out when input is empty. The model's
// answer is expected after "Answer:" (typically starting with a space).
func (c *ChatTemplate) PlainPrompt(instruction, input string) []int32 {
	text := instruction + "\n\n"
	if input != "" {
		text += input + "\n\n"
	}
	text += "Answer:"
	return c.tok.AppendEncodeOrdinary([]int32{c.bot}, text)
}

// StopIDs are the ids that end generation: <|eot_id|> and <|end_of_text|>.
func (c *ChatTemplate) StopIDs() []int32 { return []int32{c.eoT, c.eot} }

// BOS returns the id of <|begin_of_text|>.
func (c *ChatTemplate) BOS() int32 { return c.bot }

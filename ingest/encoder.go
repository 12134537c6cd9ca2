package ingest

import "replayd/tokenizer"

// Encoder turns decoded sample text into token ids and loss masks.
// *tokenizer.ChatTemplate implements it.
type Encoder interface {
	// EncodeDAPT returns the tokens of a raw document (begin and end of text
	// markers included) and a mask of 1 on every token that is a target.
	EncodeDAPT(text string) (tokens []int32, mask []uint8)
	// EncodeChat renders a conversation with the chat template. The mask is
	// 0 on template markers and non-assistant turns and 1 on assistant
	// content and its end-of-turn token.
	EncodeChat(turns []tokenizer.Turn) (tokens []int32, mask []uint8, err error)
}

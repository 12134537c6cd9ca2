// Package tokenizer loads, writes, trains and runs Hugging Face byte-level BPE
// tokenizers (tokenizer.json), and renders the chat template replayd trains
// and evaluates with.
package tokenizer

// Turn is one message of a conversation rendered by the chat template.
type Turn struct {
	// Role is "system", "user" or "assistant".
	Role string
	// Content is the message text. It is encoded as ordinary text: special
	// token strings inside it are not honoured, so data cannot inject
	// template markers.
	Content string
}

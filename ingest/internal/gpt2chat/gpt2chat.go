// Package gpt2chat builds a real tokenizer for ingest's tests and benchmark
// without a trained tokenizer.json: GPT-2's ranks (tiktoken r50k_base,
// embedded offline) with the chat template's special tokens appended.
package gpt2chat

import (
	"fmt"

	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"

	"replayd/tokenizer"
)

// New returns the chat template over GPT-2 ranks + tokenizer.SpecialTokens()
// (ids 50257 onwards, after <|endoftext|> = 50256).
func New() (*tokenizer.ChatTemplate, error) {
	ranks, err := tiktoken_loader.NewOfflineLoader().LoadTiktokenBpe("r50k_base.tiktoken")
	if err != nil {
		return nil, fmt.Errorf("gpt-2 ranks: %w", err)
	}
	special := map[string]int{"<|endoftext|>": 50256}
	for i, s := range tokenizer.SpecialTokens() {
		special[s] = 50257 + i
	}
	tok, err := tokenizer.FromRanks(ranks, special, tokenizer.StyleGPT2)
	if err != nil {
		return nil, fmt.Errorf("gpt-2 tokenizer: %w", err)
	}
	ct, err := tok.ChatTemplate()
	if err != nil {
		return nil, fmt.Errorf("gpt-2 chat template: %w", err)
	}
	return ct, nil
}

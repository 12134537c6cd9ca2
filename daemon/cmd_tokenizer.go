package daemon

import (
	"context"
	"errors"
	"io"
)

// runTokenizer is replaced by the tokenizer CLI (issue 3).
func runTokenizer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("tokenizer: not implemented yet")
}

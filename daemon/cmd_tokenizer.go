package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"replayd/tokenizer"
)

const tokenizerUsage = `usage:
  replayd tokenizer train [--vocab 8192] [--out tokenizer.json] [--style llama3|gpt2] FILES...
  replayd tokenizer encode [--tokenizer tokenizer.json] [--ordinary] [TEXT|-]
  replayd tokenizer decode [--tokenizer tokenizer.json] IDS...
  replayd tokenizer stats [--tokenizer tokenizer.json] FILES...   (bytes per token of JSONL text)
`

// runTokenizer is `replayd tokenizer`: train a byte-level BPE tokenizer,
// encode or decode with a tokenizer.json, or measure bytes per token.
func runTokenizer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		io.WriteString(stdout, tokenizerUsage)
		return nil
	}
	sub, rest := args[0], args[1:]
	fs := pflag.NewFlagSet("tokenizer "+sub, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	switch sub {
	case "train":
		return tokenizerTrain(ctx, fs, rest, stdout, stderr)
	case "encode":
		return tokenizerEncode(fs, rest, stdout)
	case "decode":
		return tokenizerDecode(fs, rest, stdout)
	case "stats":
		return tokenizerStats(fs, rest, stdout)
	}
	io.WriteString(stderr, tokenizerUsage)
	return fmt.Errorf("tokenizer: unknown subcommand %q: %w", sub, ErrUsage)
}

func parseFlags(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%s: %w: %w", fs.Name(), err, ErrUsage)
	}
	return nil
}

func tokenizerTrain(ctx context.Context, fs *pflag.FlagSet, args []string, stdout, stderr io.Writer) error {
	vocab := fs.Int("vocab", 8192, "vocabulary size, special tokens included")
	out := fs.String("out", "tokenizer.json", "output tokenizer.json")
	style := fs.String("style", "llama3", "pre-tokenizer: llama3 (Split+ByteLevel) or gpt2 (ByteLevel)")
	minFreq := fs.Int("min-frequency", 2, "stop when the best pair is rarer than this")
	maxWords := fs.Int("max-words", 2_000_000, "cap on distinct words kept while counting (bounds memory)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opts := tokenizer.TrainOptions{VocabSize: *vocab, MinFrequency: *minFreq, MaxWords: *maxWords, Progress: stderr}
	switch *style {
	case "llama3":
		opts.Style = tokenizer.StyleLlama3
	case "gpt2":
		opts.Style = tokenizer.StyleGPT2
	default:
		return fmt.Errorf("tokenizer train: --style %q: want llama3 or gpt2: %w", *style, ErrUsage)
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("tokenizer train: no input files: %w", ErrUsage)
	}
	start := time.Now()
	tk, err := tokenizer.Train(ctx, opts, fs.Args()...)
	if err != nil {
		return err
	}
	if err := tk.Save(*out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: vocab %d in %.1fs\n", *out, tk.VocabSize(), time.Since(start).Seconds())
	return nil
}

func loadTokenizerFlag(fs *pflag.FlagSet) *string {
	return fs.String("tokenizer", "tokenizer.json", "tokenizer.json to use")
}

func tokenizerEncode(fs *pflag.FlagSet, args []string, stdout io.Writer) error {
	path := loadTokenizerFlag(fs)
	ordinary := fs.Bool("ordinary", false, "treat special tokens in the text as plain text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	tk, err := tokenizer.Load(*path)
	if err != nil {
		return err
	}
	var text string
	switch {
	case fs.NArg() == 0 || (fs.NArg() == 1 && fs.Arg(0) == "-"):
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return fmt.Errorf("tokenizer encode: read stdin: %w", err)
		}
		text = string(b)
	default:
		text = strings.Join(fs.Args(), " ")
	}
	ids := tk.Encode(text)
	if *ordinary {
		ids = tk.EncodeOrdinary(text)
	}
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(int(id))
	}
	fmt.Fprintln(stdout, strings.Join(parts, " "))
	return nil
}

func tokenizerDecode(fs *pflag.FlagSet, args []string, stdout io.Writer) error {
	path := loadTokenizerFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	tk, err := tokenizer.Load(*path)
	if err != nil {
		return err
	}
	var ids []int32
	for _, a := range fs.Args() {
		for _, f := range strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == ' ' || r == '[' || r == ']' }) {
			v, err := strconv.ParseInt(f, 10, 32)
			if err != nil {
				return fmt.Errorf("tokenizer decode: id %q: %w", f, ErrUsage)
			}
			if v < 0 || int(v) >= tk.VocabSize() {
				return fmt.Errorf("tokenizer decode: id %d outside the vocabulary (size %d)", v, tk.VocabSize())
			}
			ids = append(ids, int32(v))
		}
	}
	fmt.Fprintln(stdout, tk.Decode(ids))
	return nil
}

func tokenizerStats(fs *pflag.FlagSet, args []string, stdout io.Writer) error {
	path := loadTokenizerFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	tk, err := tokenizer.Load(*path)
	if err != nil {
		return err
	}
	for _, f := range fs.Args() {
		texts, err := readJSONLTexts(f)
		if err != nil {
			return err
		}
		var nb, nt int
		for i, ids := range tk.EncodeBatch(texts, 0) {
			nb += len(texts[i])
			nt += len(ids)
		}
		if nt == 0 {
			return fmt.Errorf("tokenizer stats: %s: no text", f)
		}
		fmt.Fprintf(stdout, "%s bytes=%d tokens=%d bytes_per_token=%.3f\n", f, nb, nt, float64(nb)/float64(nt))
	}
	return nil
}

// readJSONLTexts reads the `text` field (else instruction/input/output) of
// each line of a JSONL file.
func readJSONLTexts(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer stats: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for n := 1; sc.Scan(); n++ {
		var row struct {
			Text        *string `json:"text"`
			Instruction string  `json:"instruction"`
			Input       string  `json:"input"`
			Output      string  `json:"output"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, fmt.Errorf("tokenizer stats: %s:%d: %w", path, n, err)
		}
		if row.Text != nil {
			out = append(out, *row.Text)
			continue
		}
		for _, s := range []string{row.Instruction, row.Input, row.Output} {
			if s != "" {
				out = append(out, s)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokenizer stats: read %s: %w", path, err)
	}
	return out, nil
}

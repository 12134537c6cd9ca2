// Package daemon wires replayd's packages together: the CLI, the serve loop
// and its lifecycle.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// command is one CLI subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the CLI's subcommands. Each lives in its own cmd_*.go file.
func commands() map[string]command {
	return map[string]command{
		"tokenizer":   {"train, encode or decode with a tokenizer.json", runTokenizer},
		"serve":       {"run the daemon: ingest, mix, train, evaluate, publish", runServe},
		"demo":        {"run the daemon on synthetic data with embedded NATS and a tiny model", runDemo},
		"ingest":      {"publish JSONL samples to the ingest stream", runIngest},
		"eval":        {"evaluate a checkpoint and print a table", runEval},
		"checkpoints": {"list, pull or watch published checkpoints", runCheckpoints},
		"policy":      {"push, list, roll back or test mixing policies", runPolicy},
		"experiment":  {"run a grid of post-training variants and write a results table", runExperiment},
		"pretrain":    {"train the base model and tokenizer an experiment starts from", runPretrain},
	}
}

// ErrUsage marks a command-line usage error.
var ErrUsage = errors.New("usage error")

// Main runs the replayd CLI with args (without the program name).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout, cmds)
		return nil
	}
	c, ok := cmds[args[0]]
	if !ok {
		usage(stderr, cmds)
		return fmt.Errorf("unknown command %q: %w", args[0], ErrUsage)
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage: replayd COMMAND [flags]\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-12s %s\n", n, cmds[n].summary)
	}
	io.WriteString(w, b.String())
}

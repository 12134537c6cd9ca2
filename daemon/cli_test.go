package daemon

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"replayd/evaluator"
	"replayd/ingest"
	"replayd/policies"
)

func TestCLIUsage(t *testing.T) {
	cases := []struct {
		args    []string
		wantErr error
		out     string
	}{
		{nil, nil, "usage: replayd"},
		{[]string{"frobnicate"}, ErrUsage, ""},
		{[]string{"checkpoints"}, ErrUsage, ""},
		{[]string{"checkpoints", "dance", "--nats.url", "nats://127.0.0.1:1"}, nil, ""},
		{[]string{"eval"}, ErrUsage, ""},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		err := Main(context.Background(), c.args, &out, &errOut)
		if c.wantErr != nil && !errors.Is(err, c.wantErr) {
			t.Errorf("%v: error %v, want %v", c.args, err, c.wantErr)
		}
		if c.wantErr == nil && c.out == "" && err == nil {
			t.Errorf("%v: no error", c.args)
		}
		if c.out != "" && !strings.Contains(out.String(), c.out) {
			t.Errorf("%v: output %q lacks %q", c.args, out.String(), c.out)
		}
	}
}

// TestCheckpointsCLI lists and pulls a published checkpoint through
// `replayd checkpoints` against a NATS server.
func TestCheckpointsCLI(t *testing.T) {
	ctx, conn := embeddedNATS(t, time.Minute)
	reg, err := evaluator.OpenRegistry(ctx, conn.JS, evaluator.RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	for _, f := range evaluator.CheckpointFiles {
		if err := os.WriteFile(filepath.Join(src, f), []byte("content of "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.Publish(ctx, "step-00000042", src); err != nil {
		t.Fatal(err)
	}
	url := conn.ClientURL()
	var out, errOut bytes.Buffer
	if err := Main(ctx, []string{"checkpoints", "list", "--nats.url", url}, &out, &errOut); err != nil {
		t.Fatalf("list: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "step-00000042") || !strings.Contains(out.String(), "(latest)") {
		t.Fatalf("list output %q", out.String())
	}
	dst := filepath.Join(t.TempDir(), "pulled")
	out.Reset()
	if err := Main(ctx, []string{"checkpoints", "pull", "--latest", "--out", dst, "--nats.url", url}, &out, &errOut); err != nil {
		t.Fatalf("pull: %v\n%s", err, errOut.String())
	}
	got, err := os.ReadFile(filepath.Join(dst, "config.json"))
	if err != nil || string(got) != "content of config.json" {
		t.Fatalf("pulled config.json %q, %v", got, err)
	}
}

// TestIngestCLI publishes a file with `replayd ingest`: valid lines are
// stored once (a second run counts duplicates), invalid ones are reported
// with their line numbers and reasons.
func TestIngestCLI(t *testing.T) {
	ctx, conn := embeddedNATS(t, time.Minute)
	file := filepath.Join(t.TempDir(), "sft.jsonl")
	lines := `{"id": "a", "instruction": "Sentiment?", "input": "Profit rose.", "output": "positive"}
{"id": "b", "instruction": "Sentiment?", "input": "Profit fell.", "output": "negative"}
{"id": "c", "instruction": "Sentiment?", "output": ""}
not json
{"instruction": "Sentiment?", "input": "Flat.", "output": "neutral"}
`
	if err := os.WriteFile(file, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func() string {
		var out, errOut bytes.Buffer
		err := Main(ctx, []string{"ingest", "--url", conn.ClientURL(), "--kind", "sft", "--domain", "fin", "--no-progress", file}, &out, &errOut)
		if err != nil {
			t.Fatalf("ingest: %v\n%s", err, errOut.String())
		}
		return out.String() + errOut.String()
	}
	first := run()
	for _, want := range []string{"published=3", "rejected=2", ":3:", ":4:"} {
		if !strings.Contains(first, want) {
			t.Errorf("first run output lacks %q:\n%s", want, first)
		}
	}
	if second := run(); !strings.Contains(second, "duplicate=3") || !strings.Contains(second, "published=0") {
		t.Errorf("second run:\n%s", second)
	}
	s, err := conn.JS.Stream(ctx, ingest.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 3 {
		t.Fatalf("stream holds %d messages, want 3", n)
	}
}

// TestPolicyCLI pushes, lists and rolls back policies with `replayd policy`,
// refuses a hostile module at push, and runs `policy test` offline.
func TestPolicyCLI(t *testing.T) {
	ctx, conn := embeddedNATS(t, 2*time.Minute)
	dir := t.TempDir()
	for _, name := range []string{"joint-replay", "sft-only"} {
		wasm, err := policies.Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".wasm"), wasm, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	url := conn.ClientURL()
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := Main(ctx, append([]string{"policy"}, args...), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	for _, name := range []string{"joint-replay", "sft-only"} {
		if out, err := run("push", filepath.Join(dir, name+".wasm"), "--name", name, "--url", url); err != nil || !strings.Contains(out, "pushed "+name) {
			t.Fatalf("push %s: %v\n%s", name, err, out)
		}
	}
	if out, err := run("push", "../policies/testdata/hostile/trap.wasm", "--url", url); err == nil {
		t.Fatalf("hostile module pushed:\n%s", out)
	}
	out, err := run("list", "--url", url)
	if err != nil || strings.Index(out, "joint-replay") > strings.Index(out, "sft-only") || strings.Contains(out, "trap") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err := run("rollback", "--url", url); err != nil || !strings.Contains(out, "active joint-replay") {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "samples.jsonl")
	var b strings.Builder
	for i := 0; i < 200; i++ {
		b.WriteString(`{"text": "Shares of the company rose sharply after the quarterly report was published."}` + "\n")
	}
	os.WriteFile(data, []byte(b.String()), 0o644)
	out, err = run("test", "joint-replay", "--data", data, "--batch", "2", "--seq-len", "64")
	if err != nil || !strings.Contains(out, "policy joint-replay") || !strings.Contains(out, "packing efficiency") {
		t.Fatalf("policy test: %v\n%s", err, out)
	}
}

// embeddedNATS starts an embedded NATS server for the test and connects to
// it; the returned context ends with the test or after timeout.
func embeddedNATS(t *testing.T, timeout time.Duration) (context.Context, *ingest.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	conn, err := ingest.Connect(ctx, ingest.NATSOptions{Embedded: ingest.EmbeddedOptions{DataDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() }) // as the tests' defer did: a close error is not theirs to check
	return ctx, conn
}

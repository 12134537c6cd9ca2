package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"replayd/ingest"
)

// runIngest publishes JSONL files to the ingest stream of a running NATS
// server: `replayd ingest [--kind dapt|sft] [--domain fin] --url nats://… FILE.jsonl… | -`.
// It is a thin wrapper over ingest.PublishFiles.
func runIngest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("ingest", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		kind        = fs.String("kind", "dapt", "sample kind: dapt (raw text) or sft (instructions)")
		domain      = fs.String("domain", "fin", "domain token of the subject replayd.ingest.<kind>.<domain>")
		url         = fs.String("url", os.Getenv("NATS_URL"), "NATS server URL(s), comma-separated (default $NATS_URL); required: the daemon's embedded server runs in another process and prints its URL at start")
		creds       = fs.String("creds", "", "NATS credentials file")
		user        = fs.String("user", "", "NATS user")
		password    = fs.String("password", os.Getenv("NATS_PASSWORD"), "NATS password (default $NATS_PASSWORD)")
		tlsCA       = fs.String("tls-ca", "", "PEM CA file to verify the server")
		tlsCert     = fs.String("tls-cert", "", "client certificate (PEM) for mutual TLS")
		tlsKey      = fs.String("tls-key", "", "client key (PEM) for mutual TLS")
		prefix      = fs.String("subject-prefix", ingest.DefaultSubjectPrefix, "ingest subject prefix")
		stream      = fs.String("stream", ingest.DefaultStreamName, "ingest stream, created with default settings if missing")
		noCreate    = fs.Bool("no-create-stream", false, "do not create the streams when missing")
		inFlight    = fs.Int("max-in-flight", 256, "most publishes awaiting their ack")
		maxBytes    = fs.Int("max-bytes", ingest.DefaultLimits.MaxBytes, "largest line in bytes (NATS max_payload is 1 MiB by default)")
		maxChars    = fs.Int("max-text-chars", ingest.DefaultLimits.MaxTextChars, "largest text field in characters")
		maxMessages = fs.Int("max-messages", ingest.DefaultLimits.MaxMessages, "most turns in a messages conversation")
		noProgress  = fs.Bool("no-progress", false, "no progress bar on stderr")
		showRejects = fs.Int("show-rejects", 50, "rejected lines to list")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: replayd ingest [flags] FILE.jsonl... (- for stdin)\n\n"+
			"Validates each line as the daemon would and publishes the valid ones with\n"+
			"Nats-Msg-Id = the sample id (a content hash when absent).\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("ingest: %v: %w", err, ErrUsage)
	}
	k, err := ingest.ParseKind(*kind)
	if err != nil {
		return fmt.Errorf("ingest: %v: %w", err, ErrUsage)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("ingest: no input files: %w", ErrUsage)
	}
	if *url == "" {
		return fmt.Errorf("ingest: --url is required (the daemon's embedded NATS runs in its own process; use the URL it logs at start): %w", ErrUsage)
	}
	conn, err := ingest.Connect(ctx, ingest.NATSOptions{
		URL: *url, CredsFile: *creds, User: *user, Password: *password,
		TLSCA: *tlsCA, TLSCert: *tlsCert, TLSKey: *tlsKey, Name: "replayd-ingest",
	})
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	defer conn.Close()
	sopts := ingest.StreamOptions{Name: *stream, SubjectPrefix: *prefix}
	if !*noCreate {
		// Create only: an existing stream keeps the daemon's settings.
		if _, _, err := ingest.EnsureStreams(ctx, conn.JS, sopts, false); err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
	}
	popts := ingest.PublishOptions{
		Kind: k, Domain: *domain,
		Subjects:    ingest.Subjects{Prefix: *prefix},
		Limits:      ingest.Limits{MaxBytes: *maxBytes, MaxTextChars: *maxChars, MaxMessages: *maxMessages},
		MaxInFlight: *inFlight,
	}
	if !*noProgress {
		popts.Progress = stderr
	}
	rep, err := ingest.PublishFiles(ctx, conn.NC, fs.Args(), os.Stdin, popts)
	for i, r := range rep.Rejects {
		if i >= *showRejects {
			fmt.Fprintf(stderr, "... and %d more rejected lines\n", rep.Rejected-i)
			break
		}
		fmt.Fprintf(stderr, "%s:%d: %s: %s\n", r.File, r.Line, r.Reason, r.Detail)
	}
	fmt.Fprintf(stdout, "ingest lines=%d published=%d duplicate=%d rejected=%d bytes=%d\n",
		rep.Lines, rep.Published, rep.Duplicates, rep.Rejected, rep.Bytes)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	return nil
}

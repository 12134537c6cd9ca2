package ingest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"
)

// PublishOptions configures Publish.
type PublishOptions struct {
	// Kind and Domain choose the subject <prefix>.<kind>.<domain>.
	Kind   Kind
	Domain string
	// Subjects supplies the prefix (the domain map is not consulted: the
	// reader dead-letters a domain the daemon does not know).
	Subjects Subjects
	// Limits are applied to every line before publishing, as the reader
	// would; a line that fails is not published.
	Limits Limits
	// MaxInFlight bounds async publishes awaiting their ack (default 256).
	MaxInFlight int
	// AckTimeout is how long one publish waits for its ack before it is
	// retried with the same Nats-Msg-Id (default 5s).
	AckTimeout time.Duration
	// RetryFor is how long one message is retried through leader
	// elections and reconnects before Publish gives up (default 60s).
	RetryFor time.Duration
	// Progress, when set, receives a progress bar (stderr in the CLI).
	Progress io.Writer
	// MaxRejectReports caps PublishReport.Rejects (default 1000); the
	// count in Rejected stays exact.
	MaxRejectReports int
}

// PublishInput is one JSONL source.
type PublishInput struct {
	// Name labels rejects ("-" for stdin).
	Name string
	// R yields JSON lines.
	R io.Reader
	// Size is R's length in bytes for the progress bar (-1: unknown).
	Size int64
}

// LineReject is a line that was not published.
type LineReject struct {
	File   string
	Line   int
	Reason Reason
	Detail string
}

// PublishReport counts what Publish did. Blank lines are skipped and not
// counted as lines.
type PublishReport struct {
	// Lines is the number of non-blank lines read.
	Lines int
	// Published is lines stored as new messages.
	Published int
	// Duplicates is lines the stream already had (same Nats-Msg-Id within
	// the duplicate window: PubAck.Duplicate).
	Duplicates int
	// Rejected is lines that failed validation and were not published.
	Rejected int
	// Rejects details the first MaxRejectReports rejected lines.
	Rejects []LineReject
	// Bytes is the payload bytes published.
	Bytes int64
}

type pubJob struct {
	msg  *nats.Msg
	fut  jetstream.PubAckFuture
	file string
	line int
}

// Publish validates each line of the inputs and publishes the valid ones to
// the ingest subject with Nats-Msg-Id = the sample's id (ContentID of the
// line when it has none), asynchronously with at most MaxInFlight
// unacknowledged. A publish that fails or times out is retried with the
// same id, so the stream stores it once. Invalid or oversize lines are
// reported and skipped; an error is returned only for I/O failures or a
// message that could not be stored within RetryFor.
func Publish(ctx context.Context, nc *nats.Conn, inputs []PublishInput, opts PublishOptions) (PublishReport, error) {
	var rep PublishReport
	if err := validateToken("domain", opts.Domain); err != nil {
		return rep, err
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 256
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 5 * time.Second
	}
	if opts.RetryFor <= 0 {
		opts.RetryFor = time.Minute
	}
	if opts.MaxRejectReports <= 0 {
		opts.MaxRejectReports = 1000
	}
	limits := opts.Limits.withDefaults()
	subject := opts.Subjects.Subject(opts.Kind, opts.Domain)
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(opts.MaxInFlight+1),
		jetstream.WithPublishAsyncTimeout(opts.AckTimeout))
	if err != nil {
		return rep, fmt.Errorf("jetstream: %w", err)
	}
	var total int64
	for _, in := range inputs {
		if in.Size < 0 {
			total = -1
			break
		}
		total += in.Size
	}
	var bar *progressbar.ProgressBar
	if opts.Progress != nil {
		bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(opts.Progress),
			progressbar.OptionSetDescription("publishing "+subject),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(opts.Progress) }),
		)
	}

	// The collector waits for acks in publish order; the bounded channel
	// is the in-flight limit.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan *pubJob, opts.MaxInFlight)
	var mu sync.Mutex // guards rep's ack counters against the reader loop
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for j := range queue {
			dup, err := awaitAck(ctx, js, j, opts)
			if err != nil {
				cancel(err)
				for range queue { // let the producer finish
				}
				return
			}
			mu.Lock()
			if dup {
				rep.Duplicates++
			} else {
				rep.Published++
				rep.Bytes += int64(len(j.msg.Data))
			}
			mu.Unlock()
		}
	}()

	addReject := func(file string, line int, err error) {
		mu.Lock()
		defer mu.Unlock()
		rep.Rejected++
		if len(rep.Rejects) < opts.MaxRejectReports {
			var re *RejectError
			lr := LineReject{File: file, Line: line, Reason: ReasonOf(err), Detail: err.Error()}
			if errors.As(err, &re) {
				lr.Detail = re.Detail
			}
			rep.Rejects = append(rep.Rejects, lr)
		}
	}
	readErr := func() error {
		defer close(queue)
		for _, in := range inputs {
			br := bufio.NewReaderSize(in.R, 256<<10)
			for lineNo := 1; ; lineNo++ {
				if err := ctx.Err(); err != nil {
					return context.Cause(ctx)
				}
				line, n, err := readLine(br, limits.MaxBytes)
				if bar != nil && n > 0 {
					_ = bar.Add64(int64(n))
				}
				if err == io.EOF && n == 0 {
					break
				}
				if err != nil && err != io.EOF {
					return fmt.Errorf("read %s line %d: %w", in.Name, lineNo, err)
				}
				if len(bytes.TrimSpace(line)) == 0 && line != nil {
					continue
				}
				mu.Lock()
				rep.Lines++
				mu.Unlock()
				if line == nil {
					addReject(in.Name, lineNo, reject(ReasonOversize, "line is over %d bytes", limits.MaxBytes))
					continue
				}
				rec, verr := limits.Decode(opts.Kind, line)
				if verr != nil {
					addReject(in.Name, lineNo, verr)
					continue
				}
				id := rec.ID
				if id == "" {
					id = ContentID(line)
				}
				msg := nats.NewMsg(subject)
				msg.Data = line
				msg.Header.Set(jetstream.MsgIDHeader, id)
				// The server's max_payload counts headers and data; a
				// larger message cannot be sent at all.
				if mp := nc.MaxPayload(); mp > 0 && int64(len(line)+headerSize(msg.Header)) > mp {
					addReject(in.Name, lineNo, reject(ReasonOversize, "%d bytes with headers exceeds the server's max_payload %d", len(line)+headerSize(msg.Header), mp))
					continue
				}
				j := &pubJob{msg: msg, file: in.Name, line: lineNo}
				fut, perr := publishAsync(ctx, js, msg, opts)
				if perr != nil {
					return perr
				}
				j.fut = fut
				select {
				case queue <- j:
				case <-ctx.Done():
					return context.Cause(ctx)
				}
				// At io.EOF the next readLine returns (nil, 0, io.EOF).
			}
		}
		return nil
	}()
	wg.Wait()
	if bar != nil {
		_ = bar.Finish()
	}
	if cause := context.Cause(ctx); cause != nil && readErr == nil {
		readErr = cause
	}
	if readErr != nil {
		return rep, fmt.Errorf("publish to %s: %w", subject, readErr)
	}
	return rep, nil
}

// PublishFiles publishes JSONL files ("-" reads stdin) with Publish.
func PublishFiles(ctx context.Context, nc *nats.Conn, paths []string, stdin io.Reader, opts PublishOptions) (PublishReport, error) {
	inputs := make([]PublishInput, 0, len(paths))
	for _, p := range paths {
		if p == "-" {
			inputs = append(inputs, PublishInput{Name: "-", R: stdin, Size: -1})
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			return PublishReport{}, fmt.Errorf("open input: %w", err)
		}
		defer f.Close()
		size := int64(-1)
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
		inputs = append(inputs, PublishInput{Name: p, R: f, Size: size})
	}
	return Publish(ctx, nc, inputs, opts)
}

// publishAsync starts one publish, retrying while the client refuses it
// (e.g. too many pending acks during a reconnect).
func publishAsync(ctx context.Context, js jetstream.JetStream, msg *nats.Msg, opts PublishOptions) (jetstream.PubAckFuture, error) {
	deadline := time.Now().Add(opts.RetryFor)
	backoff := 50 * time.Millisecond
	for {
		fut, err := js.PublishMsgAsync(msg, jetstream.WithStallWait(opts.AckTimeout))
		if err == nil {
			return fut, nil
		}
		if errors.Is(err, nats.ErrMaxPayload) || time.Now().After(deadline) {
			return nil, fmt.Errorf("publish %s: %w", msg.Header.Get(jetstream.MsgIDHeader), err)
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return nil, err
		}
		backoff = min(2*backoff, time.Second)
	}
}

// awaitAck waits for j's ack. On an error (timeout, no responders during a
// leader election, disconnect) it republishes synchronously with the same
// Nats-Msg-Id until RetryFor: the stream's de-duplication turns a publish
// that had in fact been stored into a duplicate ack, never a second copy.
func awaitAck(ctx context.Context, js jetstream.JetStream, j *pubJob, opts PublishOptions) (dup bool, err error) {
	select {
	case ack := <-j.fut.Ok():
		return ack.Duplicate, nil
	case err = <-j.fut.Err():
	case <-ctx.Done():
		return false, context.Cause(ctx)
	}
	deadline := time.Now().Add(opts.RetryFor)
	backoff := 100 * time.Millisecond
	for time.Now().Before(deadline) {
		if err := sleepCtx(ctx, backoff); err != nil {
			return false, err
		}
		backoff = min(2*backoff, 2*time.Second)
		actx, cancel := context.WithTimeout(ctx, opts.AckTimeout)
		_, perr := js.PublishMsg(actx, j.msg)
		cancel()
		if perr == nil {
			// A retry of a message stored before the failure reports
			// Duplicate; it still counts once, as published.
			return false, nil
		}
		err = perr
	}
	return false, fmt.Errorf("%s line %d (id %s): not stored after %s: %w", j.file, j.line, j.msg.Header.Get(jetstream.MsgIDHeader), opts.RetryFor, err)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// headerSize approximates the encoded size of h ("NATS/1.0\r\n" + lines).
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n
}

// readLine returns the next line without its line ending, and the number of
// bytes consumed. A line over max bytes is consumed and returned as nil
// (with its size), so a huge line never sits in memory. err is io.EOF with
// the last line when the input ends without a newline.
func readLine(br *bufio.Reader, max int) (line []byte, n int, err error) {
	var buf []byte
	over := false
	for {
		chunk, err := br.ReadSlice('\n')
		n += len(chunk)
		if !over {
			if len(buf)+len(chunk) > max+2 { // +2: the line ending
				over, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil && err != io.EOF {
			return nil, n, err
		}
		if over {
			return nil, n, err
		}
		buf = bytes.TrimSuffix(buf, []byte("\n"))
		buf = bytes.TrimSuffix(buf, []byte("\r"))
		if len(buf) > max {
			return nil, n, err
		}
		if buf == nil {
			buf = []byte{}
		}
		return buf, n, err
	}
}

package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of a dead-letter message. The payload is the original bytes.
const (
	HeaderReason        = "Replayd-Reason"
	HeaderDetail        = "Replayd-Detail"
	HeaderSourceStream  = "Replayd-Source-Stream"
	HeaderSourceSeq     = "Replayd-Source-Seq"
	HeaderSourceSubject = "Replayd-Source-Subject"
	HeaderSourceMsgID   = "Replayd-Source-Msg-Id"
)

// ErrNotSample is wrapped by Log.Get for a sequence whose message was
// rejected (it is in the dead-letter stream, not a sample).
var ErrNotSample = errors.New("message is not a valid sample")

// ContentID is the id of a sample that has none: the first 32 hex digits
// (128 bits) of the SHA-256 of its bytes. The publisher and the reader
// compute it the same way, so the Nats-Msg-Id and Sample.ID agree.
func ContentID(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:16])
}

// Log is the ingest stream seen as a log of samples: sequential reads from a
// position (Read), random access by sequence (Get), and the per-bucket
// index replay samples from.
type Log struct {
	js       jetstream.JetStream
	stream   jetstream.Stream
	dlq      jetstream.Stream
	opts     StreamOptions
	subjects Subjects
	enc      Encoder
	index    *Index
}

// OpenLog ensures the ingest and dead-letter streams exist with opts
// (updating their configuration: the daemon owns them) and returns the
// log. enc tokenizes samples and must be safe for concurrent use (readers
// tokenize on several goroutines); nil leaves Tokens and LossMask empty.
func OpenLog(ctx context.Context, c *Conn, opts StreamOptions, enc Encoder) (*Log, error) {
	ingest, dlq, err := EnsureStreams(ctx, c.JS, opts, true)
	if err != nil {
		return nil, err
	}
	opts = opts.WithDefaults()
	return &Log{
		js: c.JS, stream: ingest, dlq: dlq, opts: opts,
		subjects: opts.Subjects(), enc: enc, index: NewIndex(),
	}, nil
}

// Options returns the stream options with defaults filled in.
func (l *Log) Options() StreamOptions { return l.opts }

// Index returns the log's bucket index.
func (l *Log) Index() *Index { return l.index }

// LogInfo is the state of the ingest stream.
type LogInfo struct {
	// FirstSeq and LastSeq bound the stored sequences (FirstSeq > LastSeq
	// when the stream is empty).
	FirstSeq, LastSeq uint64
	// Msgs and Bytes are the stored messages and bytes.
	Msgs, Bytes uint64
}

// Info returns the ingest stream's current state.
func (l *Log) Info(ctx context.Context) (LogInfo, error) {
	si, err := l.stream.Info(ctx)
	if err != nil {
		return LogInfo{}, fmt.Errorf("stream %s info: %w", l.opts.Name, err)
	}
	return LogInfo{FirstSeq: si.State.FirstSeq, LastSeq: si.State.LastSeq, Msgs: si.State.Msgs, Bytes: si.State.Bytes}, nil
}

// FirstSeq returns the oldest stored sequence.
func (l *Log) FirstSeq(ctx context.Context) (uint64, error) {
	i, err := l.Info(ctx)
	return i.FirstSeq, err
}

// LastSeq returns the newest stored sequence (0 for an empty stream).
func (l *Log) LastSeq(ctx context.Context) (uint64, error) {
	i, err := l.Info(ctx)
	return i.LastSeq, err
}

// Get returns the sample at stream sequence seq, decoded, validated and
// tokenized (a direct get: any replica answers). A sequence that holds a
// rejected message returns an error wrapping ErrNotSample and the
// *RejectError; a sequence removed by retention wraps
// jetstream.ErrMsgNotFound.
func (l *Log) Get(ctx context.Context, seq uint64) (Sample, error) {
	m, err := l.stream.GetMsg(ctx, seq)
	if err != nil {
		return Sample{}, fmt.Errorf("get %s seq %d: %w", l.opts.Name, seq, err)
	}
	s, err := l.Process(m.Subject, seq, m.Header, m.Data)
	if err != nil {
		return Sample{}, fmt.Errorf("get %s seq %d: %w: %w", l.opts.Name, seq, ErrNotSample, err)
	}
	return s, nil
}

// Process turns one raw message of the ingest stream into a Sample: subject
// → kind, domain, bucket; payload → validated record → tokens and mask.
// Errors are *RejectError.
func (l *Log) Process(subject string, seq uint64, hdr nats.Header, data []byte) (Sample, error) {
	rec, s, err := l.decode(subject, seq, hdr, data)
	if err != nil {
		return Sample{}, err
	}
	if l.enc != nil {
		if err := encode(l.enc, rec, &s); err != nil {
			return Sample{}, err
		}
	}
	return s, nil
}

// decode validates without tokenizing.
func (l *Log) decode(subject string, seq uint64, hdr nats.Header, data []byte) (Record, Sample, error) {
	k, domain, bucket, err := l.subjects.Parse(subject)
	if err != nil {
		return Record{}, Sample{}, err
	}
	rec, err := l.opts.Limits.Decode(k, data)
	if err != nil {
		return Record{}, Sample{}, err
	}
	id := rec.ID
	if id == "" && hdr != nil {
		id = hdr.Get(jetstream.MsgIDHeader)
	}
	if id == "" {
		id = ContentID(data)
	}
	return rec, Sample{
		ID: id, Seq: seq, Kind: k, Domain: domain, Bucket: bucket,
		Task: rec.Task, Bytes: len(data), Meta: rec.Meta,
	}, nil
}

// encode tokenizes rec into s. A panicking encoder rejects the sample
// rather than killing the daemon: the input is untrusted.
func encode(enc Encoder, rec Record, s *Sample) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = reject(ReasonTokenizeFailed, "encoder panic: %v", p)
		}
	}()
	if rec.Kind == KindDAPT {
		s.Tokens, s.LossMask = enc.EncodeDAPT(rec.Text)
	} else {
		s.Tokens, s.LossMask, err = enc.EncodeChat(rec.Turns)
		if err != nil {
			return reject(ReasonTokenizeFailed, "%v", err)
		}
	}
	switch {
	case len(s.Tokens) == 0:
		return reject(ReasonTokenizeFailed, "no tokens")
	case len(s.LossMask) != len(s.Tokens):
		return reject(ReasonTokenizeFailed, "mask has %d entries for %d tokens", len(s.LossMask), len(s.Tokens))
	}
	for _, m := range s.LossMask {
		if m != 0 {
			return nil
		}
	}
	return reject(ReasonTokenizeFailed, "no target token (loss mask all zero)")
}

// deadLetter publishes a rejected message to the dead-letter stream and
// waits for the ack. Nats-Msg-Id "dlq-<seq>" makes a re-rejection after a
// crash a duplicate rather than a second entry.
func (l *Log) deadLetter(ctx context.Context, subject string, seq uint64, hdr nats.Header, data []byte, rerr error) error {
	reason, detail := ReasonOf(rerr), rerr.Error()
	if reason == "" {
		reason = ReasonInvalidJSON
	}
	var re *RejectError
	if errors.As(rerr, &re) {
		detail = re.Detail
	}
	if len(detail) > 1024 {
		detail = detail[:1024]
	}
	m := nats.NewMsg(l.opts.DLQPrefix + "." + string(reason))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, "dlq-"+strconv.FormatUint(seq, 10))
	m.Header.Set(HeaderReason, string(reason))
	m.Header.Set(HeaderDetail, detail)
	m.Header.Set(HeaderSourceStream, l.opts.Name)
	m.Header.Set(HeaderSourceSeq, strconv.FormatUint(seq, 10))
	m.Header.Set(HeaderSourceSubject, subject)
	if hdr != nil {
		if id := hdr.Get(jetstream.MsgIDHeader); id != "" {
			m.Header.Set(HeaderSourceMsgID, id)
		}
	}
	// Retry through leader elections and reconnects: a dead letter that
	// is lost would make the position skip a message without a trace.
	backoff := 100 * time.Millisecond
	for {
		_, err := l.js.PublishMsg(ctx, m, jetstream.WithExpectStream(l.opts.DLQName))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("dead-letter seq %d: %w", seq, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dead-letter seq %d: %w", seq, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// BuildIndex scans sequences [from, to] of the log (0 bounds: the stream's
// first and last) and adds each valid sample to the index without
// tokenizing it. The daemon calls it at start-up for the history before its
// resume position, so replay can draw from everything already trained on.
// Rejected messages are skipped (the reader dead-lettered them).
func (l *Log) BuildIndex(ctx context.Context, from, to uint64) (int, error) {
	info, err := l.Info(ctx)
	if err != nil {
		return 0, err
	}
	if from == 0 || from < info.FirstSeq {
		from = info.FirstSeq
	}
	if to == 0 || to > info.LastSeq {
		to = info.LastSeq
	}
	if from == 0 || from > to {
		return 0, nil
	}
	n := 0
	err = l.scan(ctx, from, to, func(m rawMsg) error {
		if _, s, err := l.decode(m.subject, m.seq, m.hdr, m.data); err == nil {
			l.index.Add(s.Bucket, s.Seq)
			n++
		}
		return nil
	})
	return n, err
}

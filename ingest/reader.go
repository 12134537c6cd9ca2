package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrReaderClosed is returned by Reader.Next after Close.
var ErrReaderClosed = errors.New("ingest reader closed")

// errStopScan ends a bounded scan.
var errStopScan = errors.New("stop scan")

type rawMsg struct {
	subject string
	seq     uint64
	pending uint64 // messages left in the stream after this one
	hdr     nats.Header
	data    []byte
}

// follow delivers the stream's messages in sequence order from start until
// ctx ends or fn returns an error. It uses an ordered consumer (ephemeral,
// flow-controlled, gap-detecting) and, when that fails beyond its own
// resets (server restart, leader change, reconnect), makes a new one that
// starts right after the last delivered sequence, so no message is
// skipped or delivered twice.
func (l *Log) follow(ctx context.Context, start uint64, filter []string, log *slog.Logger, fn func(rawMsg) error) error {
	next := max(start, 1)
	backoff := 50 * time.Millisecond
	pause := func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:    next,
			FilterSubjects: filter,
		})
		if err != nil {
			log.Warn("ingest reader: create consumer", "start", next, "err", err)
			if err := pause(); err != nil {
				return err
			}
			continue
		}
		it, err := cons.Messages()
		if err != nil {
			log.Warn("ingest reader: subscribe", "start", next, "err", err)
			if err := pause(); err != nil {
				return err
			}
			continue
		}
		for {
			msg, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				it.Stop()
				if ctx.Err() != nil {
					return ctx.Err()
				}
				log.Warn("ingest reader: next, recreating the consumer", "next", next, "err", err)
				break
			}
			md, err := msg.Metadata()
			if err != nil {
				continue // not a JetStream message; cannot happen on an ordered consumer
			}
			seq := md.Sequence.Stream
			if seq < next {
				continue // already delivered before a reset
			}
			next = seq + 1
			backoff = 50 * time.Millisecond
			if err := fn(rawMsg{subject: msg.Subject(), seq: seq, pending: md.NumPending, hdr: msg.Headers(), data: msg.Data()}); err != nil {
				it.Stop()
				return err
			}
		}
		if err := pause(); err != nil {
			return err
		}
	}
}

// scan delivers sequences [from, to] (or until nothing is pending).
func (l *Log) scan(ctx context.Context, from, to uint64, fn func(rawMsg) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := l.follow(ctx, from, nil, slog.New(slog.DiscardHandler), func(m rawMsg) error {
		if m.seq > to {
			return errStopScan
		}
		if err := fn(m); err != nil {
			return err
		}
		if m.seq >= to || m.pending == 0 {
			return errStopScan
		}
		return nil
	})
	if errors.Is(err, errStopScan) {
		return nil
	}
	return fmt.Errorf("scan %s [%d, %d]: %w", l.opts.Name, from, to, err)
}

// ReadOptions configures a Reader.
type ReadOptions struct {
	// StartSeq is the first stream sequence to read (0 or 1: the start of
	// the log). A checkpoint resumes at its last consumed sequence + 1.
	StartSeq uint64
	// Subjects restricts the read to these subjects (default: all).
	Subjects []string
	// Workers decode and tokenize in parallel (default GOMAXPROCS);
	// samples still come out in sequence order.
	Workers int
	// Buffer is how many messages may be in flight between the server
	// and Next (default 256 per worker).
	Buffer int
	// NoIndex keeps delivered samples out of the log's Index.
	NoIndex bool
	// OnReject is called (in sequence order, on the reader's goroutine,
	// after the dead letter is stored) for every rejected message.
	OnReject func(Rejection)
	// Logger receives reconnect and consumer-reset warnings (nil: none).
	Logger *slog.Logger
}

// Rejection describes a message that was dead-lettered.
type Rejection struct {
	Seq     uint64
	Subject string
	Reason  Reason
	Detail  string
	Bytes   int
}

// ReaderStats are cumulative reader counters.
type ReaderStats struct {
	// Messages is every message taken from the stream.
	Messages uint64
	// Samples and Tokens count delivered samples and their tokens.
	Samples, Tokens uint64
	// Bytes is the payload size of the delivered samples.
	Bytes uint64
	// Rejected counts dead-lettered messages by reason.
	Rejected map[Reason]uint64
	// Lag is the number of stream messages after the last one fetched.
	Lag uint64
}

type slot struct {
	m      rawMsg
	sample Sample
	err    error
	done   chan struct{}
}

type item struct {
	seq      uint64
	rejected bool
	sample   Sample
}

// Reader reads the log sequentially from a position, validating,
// dead-lettering and tokenizing each message, and hands out samples in
// sequence order. Use Next from one goroutine; Position and Stats from any.
type Reader struct {
	log    *Log
	opts   ReadOptions
	out    chan item
	cancel context.CancelFunc
	wg     sync.WaitGroup
	err    error // terminal pipeline error, written before out is closed
	pos    atomic.Uint64

	messages, samples, tokens, bytes, lag atomic.Uint64
	rejected                              [16]atomic.Uint64 // by index in Reasons
}

// Read starts a reader at opts.StartSeq. Close it to stop its goroutines.
func (l *Log) Read(ctx context.Context, opts ReadOptions) (*Reader, error) {
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 256 * opts.Workers
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(Reasons) > 16 {
		return nil, errors.New("ingest: too many reasons for the counters")
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Reader{log: l, opts: opts, out: make(chan item, opts.Buffer), cancel: cancel}
	if opts.StartSeq > 1 {
		r.pos.Store(opts.StartSeq - 1)
	}
	jobs := make(chan *slot, opts.Buffer)
	order := make(chan *slot, opts.Buffer)
	var errFetch error
	fetchDone := make(chan struct{})
	r.wg.Add(2 + opts.Workers)
	go func() { // fetcher
		defer r.wg.Done()
		defer close(fetchDone)
		defer close(jobs)
		defer close(order)
		errFetch = l.follow(ctx, opts.StartSeq, opts.Subjects, opts.Logger, func(m rawMsg) error {
			r.messages.Add(1)
			r.lag.Store(m.pending)
			s := &slot{m: m, done: make(chan struct{})}
			select {
			case jobs <- s:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case order <- s:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		})
	}()
	for range opts.Workers {
		go func() {
			defer r.wg.Done()
			for s := range jobs {
				if ctx.Err() == nil {
					s.sample, s.err = l.Process(s.m.subject, s.m.seq, s.m.hdr, s.m.data)
				} else {
					s.err = ctx.Err()
				}
				close(s.done)
			}
		}()
	}
	go func() { // orderer: dead letters and hand-out in sequence order
		defer r.wg.Done()
		defer close(r.out)
		err := r.orderLoop(ctx, order)
		// Past this point nothing is handed out: stop the fetcher and the
		// workers, then let them finish.
		cancel()
		<-fetchDone
		if err == nil {
			err = errFetch
		}
		if err == nil || errors.Is(err, context.Canceled) {
			err = ErrReaderClosed
		}
		r.err = err
		for s := range order {
			<-s.done
		}
	}()
	return r, nil
}

func (r *Reader) orderLoop(ctx context.Context, order <-chan *slot) error {
	for s := range order {
		select {
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		it := item{seq: s.m.seq}
		if s.err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := r.log.deadLetter(ctx, s.m.subject, s.m.seq, s.m.hdr, s.m.data, s.err); err != nil {
				return err
			}
			rej := Rejection{Seq: s.m.seq, Subject: s.m.subject, Reason: ReasonOf(s.err), Detail: s.err.Error(), Bytes: len(s.m.data)}
			r.countReject(rej.Reason)
			if r.opts.OnReject != nil {
				r.opts.OnReject(rej)
			}
			it.rejected = true
		} else {
			it.sample = s.sample
			if !r.opts.NoIndex {
				r.log.index.Add(s.sample.Bucket, s.sample.Seq)
			}
		}
		select {
		case r.out <- it:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (r *Reader) countReject(reason Reason) {
	for i, x := range Reasons {
		if x == reason {
			r.rejected[i].Add(1)
			return
		}
	}
}

// Next returns the next valid sample in sequence order, blocking until one
// arrives, ctx ends or the reader is closed. Rejected messages are
// dead-lettered and skipped.
func (r *Reader) Next(ctx context.Context) (Sample, error) {
	for {
		select {
		case it, ok := <-r.out:
			if !ok {
				return Sample{}, r.err
			}
			r.pos.Store(it.seq)
			if it.rejected {
				continue
			}
			r.samples.Add(1)
			r.tokens.Add(uint64(len(it.sample.Tokens)))
			r.bytes.Add(uint64(it.sample.Bytes))
			return it.sample, nil
		case <-ctx.Done():
			return Sample{}, ctx.Err()
		}
	}
}

// Position is the log position consumed so far: every sequence up to it was
// either returned by Next or dead-lettered. A checkpoint stores it and the
// next run reads from Position()+1.
func (r *Reader) Position() uint64 { return r.pos.Load() }

// Stats returns the reader's counters.
func (r *Reader) Stats() ReaderStats {
	st := ReaderStats{
		Messages: r.messages.Load(), Samples: r.samples.Load(), Tokens: r.tokens.Load(),
		Bytes: r.bytes.Load(), Lag: r.lag.Load(), Rejected: map[Reason]uint64{},
	}
	for i, x := range Reasons {
		if n := r.rejected[i].Load(); n > 0 {
			st.Rejected[x] = n
		}
	}
	return st
}

// Close stops the reader and waits for its goroutines.
func (r *Reader) Close() error {
	r.cancel()
	r.wg.Wait()
	return nil
}

package mixer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"replayd/ingest"
	"replayd/policies/abi"
)

// Log reads samples back by log sequence: replayed samples, and on Restore
// the fresh samples that were queued but not yet packed at checkpoint time.
// The daemon adapts the ingest JetStream log to it; tests may use an
// in-memory one.
type Log interface {
	Get(ctx context.Context, seq uint64) (ingest.Sample, error)
}

// Config configures a Mixer.
type Config struct {
	// B and T are the batch shape: B rows of T positions.
	B, T int
	// Seed seeds the mixture sampler and the per-sample randoms policies
	// see. The same log, seed and policy give the same batches.
	Seed uint64
	// ReplayRecency skews replay draws toward recent log positions: index
	// = n-1-floor(n·u^(1+ReplayRecency)) for u uniform; 0 is uniform.
	ReplayRecency float64
	// DecideChunk is the most samples per decide call (default 4096).
	DecideChunk int
	// MinPiece is the smallest piece a split document leaves in a row
	// (default min(16, T)): smaller gaps stay padding.
	MinPiece int
	// OnPolicyError is told when a policy fails at run time and is
	// replaced by the last good one (or re-instantiated). Optional.
	OnPolicyError func(name, hash string, err error)
}

// Mixer builds training batches from fresh samples (Add), pre-loaded
// replay data (Preload) and replays of both, under a swappable policy.
// Add, Preload, Swap, Report* and State may be called from any goroutine;
// Next is meant for one consumer (calls are serialised).
type Mixer struct {
	cfg Config
	log Log

	// inMu guards what producers hand in; Next drains it at batch start.
	inMu       sync.Mutex
	inbox      []ingest.Sample
	preInbox   []ingest.Sample
	highest    uint64
	duplicates uint64
	swapTo     *Policy
	reports    reports
	wake       chan struct{}

	// mu guards everything below; held while a batch is built.
	mu        sync.Mutex
	cur       *Policy
	lastGood  *Policy
	decidedBy string // hash of the policy whose decisions fill queues
	rng       splitmix
	step      uint64
	undecided []ingest.Sample
	underPre  []ingest.Sample
	queues    [ingest.NumBuckets]queue
	pools     [ingest.NumBuckets]pool
	counters  counters
	meta      []abi.SampleMeta
	dec       []abi.Decision
}

// reports are what the daemon tells the mixer about training and evals.
type reports struct {
	loss  [NumSlots]float32
	evals []abi.Eval
	phase uint32
}

type counters struct {
	Tokens  uint64
	SlotTok [NumSlots]uint64
	SlotN   [NumSlots]uint64
	Dropped [ingest.NumBuckets]uint64
}

// entry is a kept fresh sample waiting in its bucket's queue.
type entry struct {
	s            ingest.Sample
	weight       float32
	replayWeight float32
	replayable   bool
}

type queue struct {
	items []entry
	head  int
}

func (q *queue) len() int     { return len(q.items) - q.head }
func (q *queue) peek() *entry { return &q.items[q.head] }
func (q *queue) push(e entry) { q.items = append(q.items, e) }
func (q *queue) all() []entry { return q.items[q.head:] }
func (q *queue) reset()       { clear(q.items); q.items = q.items[:0]; q.head = 0 }
func (q *queue) compact() {
	if q.head > 1024 && q.head > len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
}

// pool is a bucket's replay pool: log sequences with their replay weight.
type pool struct {
	Seqs    []uint64
	Weights []float32
}

func (p *pool) add(seq uint64, w float32) {
	p.Seqs = append(p.Seqs, seq)
	p.Weights = append(p.Weights, w)
}

// New returns a mixer reading replays from log and deciding with policy.
func New(cfg Config, log Log, policy *Policy) (*Mixer, error) {
	if cfg.B <= 0 || cfg.T <= 0 {
		return nil, fmt.Errorf("mixer: batch shape %d×%d, want positive", cfg.B, cfg.T)
	}
	if policy == nil || log == nil {
		return nil, errors.New("mixer: a policy and a log are required")
	}
	if cfg.DecideChunk <= 0 {
		cfg.DecideChunk = 4096
	}
	if cfg.MinPiece <= 0 {
		cfg.MinPiece = 16
	}
	// A piece can never need more than a row: larger would make every row
	// unusable.
	cfg.MinPiece = min(cfg.MinPiece, cfg.T)
	if !(cfg.ReplayRecency >= 0) {
		return nil, fmt.Errorf("mixer: replay recency %v, want >= 0", cfg.ReplayRecency)
	}
	m := &Mixer{cfg: cfg, log: log, cur: policy, wake: make(chan struct{}, 1)}
	m.rng.state = cfg.Seed
	for i := range m.reports.loss {
		m.reports.loss[i] = float32(math.NaN())
	}
	return m, nil
}

func (m *Mixer) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func checkSample(s *ingest.Sample) error {
	if int(s.Bucket) >= ingest.NumBuckets {
		return fmt.Errorf("sample %q (seq %d): bucket %d out of range", s.ID, s.Seq, s.Bucket)
	}
	if s.LossMask != nil && len(s.LossMask) != len(s.Tokens) {
		return fmt.Errorf("sample %q (seq %d): %d mask entries for %d tokens", s.ID, s.Seq, len(s.LossMask), len(s.Tokens))
	}
	return nil
}

// Add hands in fresh samples in log order. They are decided by the policy
// of the batch that first needs them. A sample whose seq is not above the
// highest seq handed in before is a duplicate (a re-read after a restart)
// and is ignored. Nothing is added when a sample is malformed.
func (m *Mixer) Add(samples []ingest.Sample) error {
	for i := range samples {
		if err := checkSample(&samples[i]); err != nil {
			return fmt.Errorf("mixer: add: %w", err)
		}
	}
	m.inMu.Lock()
	for _, s := range samples {
		if s.Seq <= m.highest {
			m.duplicates++
			continue
		}
		m.highest = s.Seq
		m.inbox = append(m.inbox, s)
	}
	m.inMu.Unlock()
	m.signal()
	return nil
}

// Preload offers samples already in the log (general data loaded at
// start) to the replay pools only: the policy decides their bucket and
// replay weight, and they are never trained fresh.
func (m *Mixer) Preload(samples []ingest.Sample) error {
	for i := range samples {
		if err := checkSample(&samples[i]); err != nil {
			return fmt.Errorf("mixer: preload: %w", err)
		}
	}
	m.inMu.Lock()
	m.preInbox = append(m.preInbox, samples...)
	m.inMu.Unlock()
	m.signal()
	return nil
}

// NextFreshSeq is the log position the ingest reader should resume from:
// one past the highest fresh seq handed in (with the state, everything
// below it is accounted for).
func (m *Mixer) NextFreshSeq() uint64 {
	m.inMu.Lock()
	defer m.inMu.Unlock()
	return m.highest + 1
}

// Waiting is the number of fresh samples handed in and not yet packed or
// dropped (the daemon throttles ingest on it).
func (m *Mixer) Waiting() int {
	m.inMu.Lock()
	n := len(m.inbox)
	m.inMu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	n += len(m.undecided)
	for i := range m.queues {
		n += m.queues[i].len()
	}
	return n
}

// Swap installs a policy for the batches after the one being built (a
// batch is never split between policies). The mixer keeps the previous
// policy as the fallback if the new one fails at run time.
func (m *Mixer) Swap(p *Policy) {
	if p == nil {
		return
	}
	m.inMu.Lock()
	m.swapTo = p
	m.inMu.Unlock()
	m.signal()
}

// Policy returns the policy the next batch will use (the one set by the
// latest Swap, else the current one).
func (m *Mixer) Policy() *Policy {
	m.inMu.Lock()
	p := m.swapTo
	m.inMu.Unlock()
	if p != nil {
		return p
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur
}

// ReportLoss records recent training losses per slot (NaN entries are
// ignored) for the policy's mix input, as an exponential moving average.
func (m *Mixer) ReportLoss(loss [NumSlots]float32) {
	m.inMu.Lock()
	defer m.inMu.Unlock()
	for i, l := range loss {
		switch {
		case math.IsNaN(float64(l)):
		case math.IsNaN(float64(m.reports.loss[i])):
			m.reports.loss[i] = l
		default:
			m.reports.loss[i] = 0.9*m.reports.loss[i] + 0.1*l
		}
	}
}

// ReportEval records an eval score; the mix input carries its first and
// latest value.
func (m *Mixer) ReportEval(name string, score float64) {
	m.inMu.Lock()
	defer m.inMu.Unlock()
	for i := range m.reports.evals {
		if m.reports.evals[i].Name == name {
			m.reports.evals[i].Latest = score
			return
		}
	}
	m.reports.evals = append(m.reports.evals, abi.Eval{Name: name, First: score, Latest: score})
}

// SetPhase sets the phase number the mix input carries.
func (m *Mixer) SetPhase(phase uint32) {
	m.inMu.Lock()
	m.reports.phase = phase
	m.inMu.Unlock()
}

// DryRunInput returns the current mix input, for validating a policy
// before swapping it in (LoadOptions.Stats).
func (m *Mixer) DryRunInput() *abi.MixInput {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.mixInputLocked()
	return &in
}

func sat32(n int) uint32 { return uint32(min(n, math.MaxUint32)) }

func (m *Mixer) mixInputLocked() abi.MixInput {
	m.inMu.Lock()
	r := m.reports
	r.evals = slices.Clone(r.evals)
	m.inMu.Unlock()
	in := abi.MixInput{
		Step:    m.step,
		Tokens:  m.counters.Tokens,
		Rand:    m.rng.next(),
		Phase:   r.phase,
		SlotTok: m.counters.SlotTok,
		SlotN:   m.counters.SlotN,
		Loss:    r.loss,
		Dropped: m.counters.Dropped,
		Evals:   r.evals,
	}
	for b := range ingest.NumBuckets {
		in.Avail[2*b] = sat32(m.queues[b].len())
		in.Avail[2*b+1] = sat32(len(m.pools[b].Seqs))
	}
	return in
}

// drainLocked moves what producers handed in to the undecided lists and
// applies a pending swap.
func (m *Mixer) drainLocked() {
	m.inMu.Lock()
	defer m.inMu.Unlock()
	m.undecided = append(m.undecided, m.inbox...)
	m.underPre = append(m.underPre, m.preInbox...)
	m.inbox, m.preInbox = nil, nil
	if m.swapTo != nil {
		if m.swapTo != m.cur {
			old := m.lastGood
			m.lastGood = m.cur
			m.cur = m.swapTo
			if old != nil && old != m.cur && old != m.lastGood {
				// No longer the fallback: release its instance (a few MiB of
				// guest memory) so that a stream of pushes does not pile
				// them up. The Policy stays usable; it re-instantiates if it
				// is ever swapped in again.
				old.Close(context.Background())
			}
		}
		m.swapTo = nil
	}
}

// requeueLocked returns every decided-but-unpacked fresh sample to the
// undecided list (in log order) so the current policy decides it again:
// a batch only holds samples decided by its own policy.
func (m *Mixer) requeueLocked() {
	var back []ingest.Sample
	for b := range m.queues {
		for _, e := range m.queues[b].all() {
			back = append(back, e.s)
		}
		m.queues[b].reset()
	}
	if len(back) == 0 {
		return
	}
	back = append(back, m.undecided...)
	slices.SortFunc(back, func(a, b ingest.Sample) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	m.undecided = back
}

// policyError marks a failure of the policy, as opposed to the log or ctx.
type policyError struct{ err error }

func (e *policyError) Error() string { return e.err.Error() }
func (e *policyError) Unwrap() error { return e.err }

func (m *Mixer) sampleMeta(s *ingest.Sample) abi.SampleMeta {
	return abi.SampleMeta{
		IDHash:   abi.FNV64(s.ID),
		Seq:      s.Seq,
		Rand:     mix64(m.cfg.Seed, s.Seq),
		TaskHash: abi.FNV64(s.Task),
		Tokens:   sat32(len(s.Tokens)),
		Bytes:    sat32(s.Bytes),
		Kind:     uint8(s.Kind),
		Bucket:   uint8(s.Bucket),
	}
}

// decideAll runs the policy over list in chunks and returns the decisions
// without applying them, so a failure halfway leaves no trace.
func (m *Mixer) decideAll(ctx context.Context, p *Policy, list []ingest.Sample, flags uint32) ([]abi.Decision, error) {
	if len(list) == 0 {
		return nil, nil
	}
	out := make([]abi.Decision, len(list))
	h := abi.DecideHeader{Flags: flags, Step: m.step, Tokens: m.counters.Tokens}
	for start := 0; start < len(list); start += m.cfg.DecideChunk {
		end := min(start+m.cfg.DecideChunk, len(list))
		m.meta = m.meta[:0]
		for i := range list[start:end] {
			m.meta = append(m.meta, m.sampleMeta(&list[start+i]))
		}
		if err := p.Decide(ctx, h, m.meta, out[start:end]); err != nil {
			return nil, &policyError{err}
		}
	}
	return out, nil
}

package mixer

import (
	"bytes"
	"context"
	"encoding/gob"
	"fmt"

	"replayd/ingest"
	"replayd/policies/abi"
)

// stateVersion is bumped on any incompatible change of savedState.
const stateVersion = 1

// savedState is the mixer's checkpointed state. Samples are stored by log
// sequence only and re-read from the log on Restore.
type savedState struct {
	Version   int
	Seed      uint64
	RNG       uint64
	Step      uint64
	Highest   uint64
	DecidedBy string
	// Queued are the kept, not yet packed fresh samples per bucket, with
	// their decisions, in queue order.
	Queued [ingest.NumBuckets][]savedEntry
	// Undecided and UnderPre are handed in but not yet decided.
	Undecided []uint64
	UnderPre  []uint64
	Pools     [ingest.NumBuckets]pool
	Counters  counters
	Loss      [NumSlots]float32
	Evals     []abi.Eval
	Phase     uint32
}

type savedEntry struct {
	Seq          uint64
	Weight       float32
	ReplayWeight float32
	Replayable   bool
}

// State serialises the mixer (RNG, step, counters, the fresh samples handed
// in and not yet packed, replay pools, reports) for the training
// checkpoint. Take it between batches, together with NextFreshSeq: the
// state accounts for every fresh seq up to NextFreshSeq()-1.
func (m *Mixer) State() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inMu.Lock()
	st := savedState{
		Version:   stateVersion,
		Seed:      m.cfg.Seed,
		RNG:       m.rng.state,
		Step:      m.step,
		Highest:   m.highest,
		DecidedBy: m.decidedBy,
		Pools:     m.pools,
		Counters:  m.counters,
		Loss:      m.reports.loss,
		Evals:     m.reports.evals,
		Phase:     m.reports.phase,
	}
	for _, s := range m.undecided {
		st.Undecided = append(st.Undecided, s.Seq)
	}
	for _, s := range m.inbox {
		st.Undecided = append(st.Undecided, s.Seq)
	}
	for _, s := range m.underPre {
		st.UnderPre = append(st.UnderPre, s.Seq)
	}
	for _, s := range m.preInbox {
		st.UnderPre = append(st.UnderPre, s.Seq)
	}
	for b := range m.queues {
		for _, e := range m.queues[b].all() {
			st.Queued[b] = append(st.Queued[b], savedEntry{e.s.Seq, e.weight, e.replayWeight, e.replayable})
		}
	}
	var buf bytes.Buffer
	err := gob.NewEncoder(&buf).Encode(&st)
	m.inMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("mixer: encode state: %w", err)
	}
	return buf.Bytes(), nil
}

// Restore replaces the mixer's state with one from State, re-reading the
// queued and undecided fresh samples from log by sequence. Call it on a
// new mixer (same Config, same seed) before the first Next; then resume
// the ingest reader at NextFreshSeq(). Queued decisions are kept when the
// mixer's policy is the one that made them, and redone otherwise.
func (m *Mixer) Restore(ctx context.Context, data []byte, log Log) error {
	var st savedState
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&st); err != nil {
		return fmt.Errorf("mixer: decode state: %w", err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("mixer: state version %d, want %d", st.Version, stateVersion)
	}
	if st.Seed != m.cfg.Seed {
		return fmt.Errorf("mixer: state has seed %d, mixer %d", st.Seed, m.cfg.Seed)
	}
	get := func(seq uint64) (ingest.Sample, error) {
		s, err := log.Get(ctx, seq)
		if err != nil {
			return s, fmt.Errorf("mixer: restore: read seq %d: %w", seq, err)
		}
		if err := checkSample(&s); err != nil {
			return s, fmt.Errorf("mixer: restore: %w", err)
		}
		return s, nil
	}
	var queues [ingest.NumBuckets]queue
	for b := range st.Queued {
		for _, e := range st.Queued[b] {
			s, err := get(e.Seq)
			if err != nil {
				return err
			}
			queues[b].push(entry{s: s, weight: e.Weight, replayWeight: e.ReplayWeight, replayable: e.Replayable})
		}
	}
	var undecided, underPre []ingest.Sample
	for _, seq := range st.Undecided {
		s, err := get(seq)
		if err != nil {
			return err
		}
		undecided = append(undecided, s)
	}
	for _, seq := range st.UnderPre {
		s, err := get(seq)
		if err != nil {
			return err
		}
		underPre = append(underPre, s)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inMu.Lock()
	defer m.inMu.Unlock()
	m.log = log
	m.rng.state = st.RNG
	m.step = st.Step
	m.highest = st.Highest
	m.decidedBy = st.DecidedBy
	m.queues = queues
	m.undecided, m.underPre = undecided, underPre
	m.inbox, m.preInbox = nil, nil
	m.pools = st.Pools
	m.counters = st.Counters
	m.reports = reports{loss: st.Loss, evals: st.Evals, phase: st.Phase}
	return nil
}

package mixer

import (
	"context"
	"errors"
	"fmt"
	"math"

	"replayd/ingest"
	"replayd/policies/abi"
)

// errNothing means no slot has any data: Next waits for Add or Preload.
var errNothing = errors.New("mixer: no data")

// Next builds the next batch. It blocks while there is no data at all
// (nothing fresh queued, empty replay pools) until samples arrive or ctx
// ends; once anything has been trained or pre-loaded, replay keeps the
// stream going when fresh data runs dry. A batch that cannot be filled
// (replay disabled and the fresh queues drained) is returned partly
// padded rather than waiting.
//
// If the policy fails (trap, timeout, malformed answer) the mixer reports
// it through Config.OnPolicyError and builds the batch with the last good
// policy (or a fresh instance of the same one), so a failing policy never
// stops the stream. Errors from the log or ctx are returned; the mixer's
// state is then unchanged and Next may be called again.
func (m *Mixer) Next(ctx context.Context) (*Batch, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m.mu.Lock()
		b, err := m.nextLocked(ctx)
		m.mu.Unlock()
		if !errors.Is(err, errNothing) {
			return b, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.wake:
		}
	}
}

func (m *Mixer) nextLocked(ctx context.Context) (*Batch, error) {
	m.drainLocked()
	var perrs []string
	for attempt := 0; ; attempt++ {
		p := m.cur
		b, err := m.buildLocked(ctx, p)
		var pe *policyError
		if !errors.As(err, &pe) {
			if b != nil {
				b.Stats.PolicyErrors = perrs
			}
			return b, err
		}
		if ctx.Err() != nil {
			// Our own cancellation, not the policy's fault.
			return nil, ctx.Err()
		}
		if m.cfg.OnPolicyError != nil {
			m.cfg.OnPolicyError(p.Name(), p.Hash(), pe.err)
		}
		perrs = append(perrs, pe.err.Error())
		if attempt >= 2 {
			return nil, fmt.Errorf("mixer: no working policy: %w", pe.err)
		}
		if m.lastGood != nil && m.lastGood != p {
			m.cur, m.lastGood = m.lastGood, nil
		}
		// else: retry p; its instance was thrown away and is re-created.
	}
}

// buildLocked decides, mixes and packs one batch with policy p. On error
// the mixer's state is as before the call (decisions are applied only
// once every policy call succeeded; the packing is rolled back on a log
// error).
func (m *Mixer) buildLocked(ctx context.Context, p *Policy) (*Batch, error) {
	if m.decidedBy != p.Hash() {
		m.requeueLocked()
	}
	rng0 := m.rng
	in := m.mixInputLocked()
	props, err := p.Mix(ctx, &in)
	if err != nil {
		m.rng = rng0
		return nil, &policyError{err}
	}
	decF, err := m.decideAll(ctx, p, m.undecided, 0)
	if err != nil {
		m.rng = rng0
		return nil, err
	}
	decP, err := m.decideAll(ctx, p, m.underPre, abi.DecidePreload)
	if err != nil {
		m.rng = rng0
		return nil, err
	}
	var st BatchStats
	st.Proportions = props
	st.Decided = len(m.undecided)
	for i := range m.undecided {
		s, d := &m.undecided[i], &decF[i]
		switch {
		case d.Keep:
			m.queues[d.Bucket].push(entry{s: *s, weight: d.Weight, replayWeight: d.ReplayWeight, replayable: d.Replayable})
			st.Kept[s.Bucket]++
		case d.Replayable:
			m.pools[d.Bucket].add(s.Seq, d.ReplayWeight)
			st.Pooled[s.Bucket]++
		default:
			m.counters.Dropped[s.Bucket]++
			st.Dropped++
			st.DroppedBy[s.Bucket]++
		}
	}
	for i := range m.underPre {
		if d := &decP[i]; d.Replayable {
			m.pools[d.Bucket].add(m.underPre[i].Seq, d.ReplayWeight)
		}
	}
	clear(m.undecided)
	clear(m.underPre)
	m.undecided, m.underPre = m.undecided[:0], m.underPre[:0]
	m.decidedBy = p.Hash()

	b, err := m.packLocked(ctx, props, &st)
	if err != nil {
		m.rng = rng0
		return nil, err
	}
	b.PolicyName, b.PolicyHash = p.Name(), p.Hash()
	return b, nil
}

// drawSlot picks a slot by the proportions among slots with data, with the
// documented fallbacks; -1 when no slot has data.
//
//  1. a fresh slot without queued samples gives its share to the replay
//     slot of the same bucket (older data of that bucket recurs);
//  2. slots without data drop out, the rest are renormalised;
//  3. if that leaves nothing, every non-empty replay pool is equally
//     likely;
//  4. if there is no replay data either, kept fresh samples of any bucket
//     are drawn in proportion to their queue lengths (a policy that keeps
//     samples but gives their slot no share cannot stall the stream).
func (m *Mixer) drawSlot(props *[NumSlots]float64) (slot int, fellBack bool) {
	var w [NumSlots]float64
	var sum float64
	for b := range ingest.NumBuckets {
		fa, ra := m.queues[b].len() > 0, len(m.pools[b].Seqs) > 0
		if fa {
			w[2*b] = props[2*b]
		} else if ra {
			w[2*b+1] += props[2*b]
		}
		if ra {
			w[2*b+1] += props[2*b+1]
		}
		sum += w[2*b] + w[2*b+1]
	}
	if sum == 0 {
		for b := range ingest.NumBuckets {
			if len(m.pools[b].Seqs) > 0 {
				w[2*b+1] = 1
				sum++
			}
		}
	}
	if sum == 0 {
		for b := range ingest.NumBuckets {
			w[2*b] = float64(m.queues[b].len())
			sum += w[2*b]
		}
	}
	if sum == 0 {
		return -1, false
	}
	u := m.rng.float() * sum
	last := -1
	for s, v := range w {
		if v <= 0 {
			continue
		}
		last = s
		if u < v {
			break
		}
		u -= v
	}
	return last, w[last] != props[last]
}

// replayIndex draws a pool index, uniform or skewed toward recent entries.
func (m *Mixer) replayIndex(n int) int {
	u := m.rng.float()
	var i int
	if m.cfg.ReplayRecency == 0 {
		i = int(u * float64(n))
	} else {
		i = n - 1 - int(float64(n)*math.Pow(u, 1+m.cfg.ReplayRecency))
	}
	return min(max(i, 0), n-1)
}

func maskOf(s *ingest.Sample) []uint8 {
	if s.LossMask != nil {
		return s.LossMask
	}
	// A nil mask means every token is a target (DAPT).
	mk := make([]uint8, len(s.Tokens))
	for i := range mk {
		mk[i] = 1
	}
	return mk
}

// packLocked draws documents and packs them until the next one does not
// fit. A fresh document that does not fit stays at the head of its queue
// for the next batch; a replay draw that does not fit is discarded.
func (m *Mixer) packLocked(ctx context.Context, props [NumSlots]float64, st *BatchStats) (*Batch, error) {
	var heads [ingest.NumBuckets]int
	for b := range m.queues {
		heads[b] = m.queues[b].head
	}
	rollback := func() {
		for b := range m.queues {
			m.queues[b].head = heads[b]
		}
	}
	pk := newPacker(m.cfg.B, m.cfg.T, m.cfg.MinPiece)
	var refs []SampleRef
	type pooled struct {
		b   ingest.Bucket
		seq uint64
		w   float32
	}
	var toPool []pooled
	useless := 0
	for pk.capacity() > 0 && useless < 64 {
		slot, fell := m.drawSlot(&props)
		if slot < 0 {
			break
		}
		bucket := ingest.Bucket(slot / 2)
		replay := slot%2 == 1
		var (
			s  ingest.Sample
			w  float32
			e  *entry
			rw float32
		)
		if replay {
			pl := &m.pools[bucket]
			i := m.replayIndex(len(pl.Seqs))
			got, err := m.log.Get(ctx, pl.Seqs[i])
			if err != nil {
				rollback()
				return nil, fmt.Errorf("mixer: replay seq %d: %w", pl.Seqs[i], err)
			}
			if err := checkSample(&got); err != nil {
				rollback()
				return nil, fmt.Errorf("mixer: replay: %w", err)
			}
			s, w = got, pl.Weights[i]
		} else {
			e = m.queues[bucket].peek()
			s, w, rw = e.s, e.weight, e.replayWeight
		}
		if fell {
			st.Fallbacks++
		}
		tokens, mask := s.Tokens, maskOf(&s)
		need := len(tokens) - 1
		if need < 1 {
			// Nothing to predict. A fresh one is consumed all the same.
			if !replay {
				m.queues[bucket].head++
				refs = append(refs, SampleRef{ID: s.ID, Seq: s.Seq, Bucket: bucket})
			}
			useless++
			continue
		}
		if !pk.fits(need) {
			if !pk.empty() {
				break
			}
			c := pk.capacity()
			tokens, mask, need = tokens[:c+1], mask[:c+1], c
			st.Truncated++
		}
		pk.place(tokens, mask, w, uint8(slot), int32(len(refs)))
		refs = append(refs, SampleRef{ID: s.ID, Seq: s.Seq, Bucket: bucket, Replay: replay, Tokens: need})
		st.SlotSamples[slot]++
		st.SlotTokens[slot] += need
		if !replay {
			if e.replayable {
				toPool = append(toPool, pooled{bucket, s.Seq, rw})
			}
			m.queues[bucket].head++
		}
	}
	if len(refs) == 0 {
		rollback()
		return nil, errNothing
	}
	// Commit.
	for _, q := range toPool {
		m.pools[q.b].add(q.seq, q.w)
	}
	for b := range m.queues {
		q := &m.queues[b]
		clear(q.items[heads[b]:q.head]) // drop the packed samples' tokens
		q.compact()
	}
	for s := range NumSlots {
		m.counters.SlotN[s] += uint64(st.SlotSamples[s])
		m.counters.SlotTok[s] += uint64(st.SlotTokens[s])
		m.counters.Tokens += uint64(st.SlotTokens[s])
	}
	b := pk.b
	b.Samples = refs
	b.Step = m.step
	st.Efficiency = float64(pk.used) / float64(m.cfg.B*m.cfg.T)
	b.Stats = *st
	m.step++
	return b, nil
}

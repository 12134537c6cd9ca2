package mixer

import "replayd/ingest"

// NumSlots is the number of mixture slots: 4 buckets × {fresh, replay}.
const NumSlots = ingest.NumBuckets * 2

// SlotOf returns the slot index of a bucket, fresh or replayed:
// bucket*2 + replay.
func SlotOf(b ingest.Bucket, replay bool) int {
	s := int(b) * 2
	if replay {
		s++
	}
	return s
}

// SlotName names a slot, e.g. "sft/domain fresh".
func SlotName(slot int) string {
	r := " fresh"
	if slot%2 == 1 {
		r = " replay"
	}
	return ingest.Bucket(slot/2).String() + r
}

// PadSlot is the Buckets value of padding positions.
const PadSlot = 0xff

// Batch is B rows × T positions of packed documents. Position i of a row
// holds an input token and the target the model should predict there.
// A document d[0..n) contributes inputs d[0..n-1) and targets d[1..n); a
// document longer than the space left in a row continues in another row
// (the next piece starts with the last token of the previous one, so no
// target is lost) and its positions restart at 0 there.
type Batch struct {
	B, T int
	// Tokens are the input ids, row-major (len B*T); 0 on padding.
	Tokens []int32
	// Targets are the ids to predict; -1 on padding.
	Targets []int32
	// Weights are the loss weights: the bucket weight × the loss mask of
	// the target token; 0 on padding.
	Weights []float32
	// DocIDs index Samples per position; -1 on padding. Attention must not
	// cross positions with different DocIDs (nor rows).
	DocIDs []int32
	// Positions restart at 0 at every document piece; 0 on padding.
	Positions []int32
	// Buckets are the slot per position (bucket*2 + replay); PadSlot on
	// padding.
	Buckets []uint8
	// Samples lists the documents of the batch in packing order.
	Samples []SampleRef
	// PolicyName and PolicyHash identify the one policy that decided and
	// mixed every sample of this batch.
	PolicyName, PolicyHash string
	// Step is the mixer step that produced the batch (0-based).
	Step uint64
	// Stats describe the batch.
	Stats BatchStats
}

// SampleRef identifies a document of a batch.
type SampleRef struct {
	ID     string
	Seq    uint64
	Bucket ingest.Bucket
	Replay bool
	// Tokens is the number of input positions the document fills in the
	// batch (its token count − 1, less when truncated).
	Tokens int
}

// BatchStats describe one batch.
type BatchStats struct {
	// Efficiency is the share of non-padding positions.
	Efficiency float64
	// SlotSamples and SlotTokens count documents and positions per slot.
	SlotSamples [NumSlots]int
	SlotTokens  [NumSlots]int
	// Proportions are the policy's normalised mix answer for this batch.
	Proportions [NumSlots]float64
	// Decided and Dropped count the fresh samples decided for this batch
	// (all that were waiting) and how many of those were dropped.
	Decided, Dropped int
	// Kept, Pooled and DroppedBy split the decided samples by their
	// ingest bucket: kept for fresh training, sent to the replay pool only,
	// dropped.
	Kept, Pooled, DroppedBy [ingest.NumBuckets]int
	// Fallbacks counts draws whose slot had no data and went elsewhere.
	Fallbacks int
	// Truncated counts documents cut to fit an empty batch.
	Truncated int
	// PolicyErrors are the failures of policies replaced while building
	// this batch (the batch comes from the fallback policy).
	PolicyErrors []string
}

func newBatch(b, t int) *Batch {
	n := b * t
	bt := &Batch{
		B: b, T: t,
		Tokens:    make([]int32, n),
		Targets:   make([]int32, n),
		Weights:   make([]float32, n),
		DocIDs:    make([]int32, n),
		Positions: make([]int32, n),
		Buckets:   make([]uint8, n),
	}
	for i := range n {
		bt.Targets[i] = -1
		bt.DocIDs[i] = -1
		bt.Buckets[i] = PadSlot
	}
	return bt
}

// packer fills a Batch row by row: first fit of a whole document into the
// first row with room, otherwise pieces across rows with at least minPiece
// free positions.
type packer struct {
	b        *Batch
	free     []int // free positions per row
	minPiece int
	used     int
}

func newPacker(b, t, minPiece int) *packer {
	p := &packer{b: newBatch(b, t), free: make([]int, b), minPiece: minPiece}
	for i := range p.free {
		p.free[i] = t
	}
	return p
}

// capacity is how many input positions a split document could still use.
func (p *packer) capacity() int {
	c := 0
	for _, f := range p.free {
		if f >= p.minPiece {
			c += f
		}
	}
	return c
}

func (p *packer) empty() bool { return p.used == 0 }

// fits reports whether a document of need input positions can be placed.
func (p *packer) fits(need int) bool {
	if need <= p.capacity() {
		return true
	}
	for _, f := range p.free {
		if f >= need {
			return true
		}
	}
	return false
}

// place packs tokens (len >= 2; len-1 <= what fits) with loss mask and
// weight w as document doc of slot.
func (p *packer) place(tokens []int32, mask []uint8, w float32, slot uint8, doc int32) {
	need := len(tokens) - 1
	for r, f := range p.free {
		if f >= need {
			p.put(r, tokens, mask, w, slot, doc)
			return
		}
	}
	off := 0
	for r := range p.free {
		rem := need - off
		if rem == 0 {
			return
		}
		f := p.free[r]
		if f < p.minPiece && f < rem {
			continue
		}
		piece := min(f, rem)
		p.put(r, tokens[off:off+piece+1], mask[off:off+piece+1], w, slot, doc)
		off += piece
	}
}

// put writes one piece (inputs tokens[:n-1], targets tokens[1:]) into row r.
func (p *packer) put(r int, tokens []int32, mask []uint8, w float32, slot uint8, doc int32) {
	n := len(tokens) - 1
	T := p.b.T
	base := r*T + (T - p.free[r])
	b := p.b
	copy(b.Tokens[base:base+n], tokens[:n])
	copy(b.Targets[base:base+n], tokens[1:])
	for i := range n {
		b.Weights[base+i] = w * float32(mask[i+1])
		b.DocIDs[base+i] = doc
		b.Positions[base+i] = int32(i)
		b.Buckets[base+i] = slot
	}
	p.free[r] -= n
	p.used += n
}

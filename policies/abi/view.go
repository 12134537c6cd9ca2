package abi

import "fmt"

// DecideView gives a batch policy direct access to the records of a
// decide input and the decision slots of the output, field by field. A
// policy that reads three fields of a record and writes one decision does
// a handful of memory operations per sample this way, instead of decoding
// and encoding whole records: in a Go wasm guest, where every memory
// operation and call is several times dearer than native, that is most of
// the cost of a decide call. The accessors are small enough to inline.
type DecideView struct {
	in, out []byte
	n       int
}

// NewDecideView checks that in holds a decide input (header and records)
// and out room for its decisions, and returns a view over both.
func NewDecideView(in, out []byte) (DecideView, error) {
	h, err := ParseDecideHeader(in)
	if err != nil {
		return DecideView{}, err
	}
	n := int(h.Count)
	if len(out) < n*DecisionSize {
		return DecideView{}, fmt.Errorf("decide output: %d bytes for %d decisions: %w", len(out), n, ErrShort)
	}
	return DecideView{in: in, out: out, n: n}, nil
}

// Len is the number of records.
func (v *DecideView) Len() int { return v.n }

func rec(i int) int { return DecideHeaderSize + i*SampleMetaSize }

// IDHash returns record i's id hash.
func (v *DecideView) IDHash(i int) uint64 { return load64(v.in, rec(i)) }

// Seq returns record i's log sequence.
func (v *DecideView) Seq(i int) uint64 { return load64(v.in, rec(i)+8) }

// Rand returns record i's host random.
func (v *DecideView) Rand(i int) uint64 { return load64(v.in, rec(i)+16) }

// TaskHash returns record i's task hash.
func (v *DecideView) TaskHash(i int) uint64 { return load64(v.in, rec(i)+24) }

// Tokens returns record i's token count.
func (v *DecideView) Tokens(i int) uint32 { return load32(v.in, rec(i)+32) }

// Bytes returns record i's message size.
func (v *DecideView) Bytes(i int) uint32 { return load32(v.in, rec(i)+36) }

// Kind returns record i's kind.
func (v *DecideView) Kind(i int) uint8 { return v.in[rec(i)+40] }

// Bucket returns record i's bucket.
func (v *DecideView) Bucket(i int) uint8 { return v.in[rec(i)+41] }

// Meta decodes the whole record i.
func (v *DecideView) Meta(i int, s *SampleMeta) { GetSampleMeta(v.in, i, s) }

// Set writes decision i.
func (v *DecideView) Set(i int, d Decision) {
	w := uint32(d.Bucket)<<8 | uint32(b2u8(d.Replayable))<<16 | uint32(b2u8(d.Keep))
	store96(v.out, i*DecisionSize, w, d.Weight, d.ReplayWeight)
}

// SetFields writes decision i from its fields (Set without the struct).
func (v *DecideView) SetFields(i int, keep bool, bucket uint8, replayable bool, weight, replayWeight float32) {
	w := uint32(bucket)<<8 | uint32(b2u8(replayable))<<16 | uint32(b2u8(keep))
	store96(v.out, i*DecisionSize, w, weight, replayWeight)
}

// DecisionWord is the first 4 bytes of d's record as a little-endian
// u32: keep | bucket<<8 | flags<<16.
func DecisionWord(d *Decision) uint32 {
	return uint32(d.Bucket)<<8 | uint32(b2u8(d.Replayable))<<16 | uint32(b2u8(d.Keep))
}

// SetWord writes decision i from its first word (DecisionWord) and
// weights: the cheapest way to write a decision a policy precomputed.
func (v *DecideView) SetWord(i int, word uint32, weight, replayWeight float32) {
	store96(v.out, i*DecisionSize, word, weight, replayWeight)
}

func b2u8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

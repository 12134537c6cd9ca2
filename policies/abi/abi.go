// Package abi defines the replayd policy ABI: the exports a policy module
// has and the exact little-endian byte layouts of the buffers host and guest
// exchange. Host (replayd/mixer) and guest SDK (replayd/policies/sdk) both
// encode and decode through this package, so the two sides cannot drift.
// It is pure Go with no build tags and no imports beyond the standard
// library: it compiles for the host and for GOOS=wasip1 GOARCH=wasm.
//
// See policies/README.md for the prose version of every layout.
package abi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Version is the ABI version a module reports from its abi_version export.
// Bump it on any change to an export's signature or a buffer layout.
const Version = 1

// Export names a policy module provides.
const (
	ExportABIVersion = "abi_version" // () -> i32
	ExportAlloc      = "alloc"       // (size i32) -> i32 pointer
	ExportInit       = "init"        // (ptr, len i32) -> i32 (0 = ok); optional
	ExportDecide     = "decide"      // (ptr, len i32) -> i64 (ptr<<32 | len)
	ExportMix        = "mix"         // (ptr, len i32) -> i64 (ptr<<32 | len)
	ExportInitialize = "_initialize" // WASI reactor start; optional
)

// NumBuckets is the number of data buckets: dapt/domain, dapt/general,
// sft/domain, sft/general (the same order as replayd/ingest.Bucket).
const NumBuckets = 4

// NumSlots is the number of mixture slots: each bucket fresh or replayed.
// Slot index = bucket*2 + replay (0 fresh, 1 replay).
const NumSlots = NumBuckets * 2

// Slot returns the slot index of a bucket, fresh or replayed.
func Slot(bucket uint8, replay bool) int {
	s := int(bucket) * 2
	if replay {
		s++
	}
	return s
}

// Kinds as carried in a SampleMeta.
const (
	KindDAPT uint8 = 0
	KindSFT  uint8 = 1
)

// Flags of a decide input header.
const (
	// DecidePreload marks a batch of pre-loaded samples: they are never
	// trained fresh, only offered to the replay pool (Decision.Keep is
	// ignored, Decision.Replayable and ReplayWeight count).
	DecidePreload uint32 = 1 << 0
)

// Flags of a Decision.
const (
	// DecisionReplayable puts the sample into its bucket's replay pool.
	DecisionReplayable uint8 = 1 << 0
)

// Sizes of the fixed parts of the buffers, in bytes.
const (
	DecideHeaderSize = 32
	SampleMetaSize   = 48
	DecisionSize     = 12
	MixFixedSize     = 256
	MixOutputSize    = NumSlots * 4
)

// MaxWeight bounds a decided weight: larger values are refused as
// out-of-range (they would dominate the loss of a whole batch).
const MaxWeight = 1000

// ProportionTolerance is how far the sum of mix proportions may be from 1.
const ProportionTolerance = 0.02

// DecideHeader is the 32-byte header of a decide input.
//
//	off size field
//	0   4    count     u32  number of SampleMeta records that follow
//	4   4    flags     u32  DecidePreload
//	8   8    step      u64  training step of the batch being built
//	16  8    tokens    u64  tokens trained so far, all slots
//	24  8    reserved  u64  zero
type DecideHeader struct {
	Count  uint32
	Flags  uint32
	Step   uint64
	Tokens uint64
}

// SampleMeta is one 48-byte record of a decide input.
//
//	off size field
//	0   8    id_hash   u64  FNV-1a 64 of the sample id
//	8   8    seq       u64  log sequence
//	16  8    rand      u64  uniform random from the host, a pure function of
//	                        (mixer seed, seq): the same sample gets the same
//	                        value on every run and after a restart
//	24  8    task_hash u64  FNV-1a 64 of the task name, 0 when none
//	32  4    tokens    u32  token count
//	36  4    bytes     u32  size of the original message
//	40  1    kind      u8   0 dapt, 1 sft
//	41  1    bucket    u8   0..3 (ingest's bucket)
//	42  6    reserved       zero
type SampleMeta struct {
	IDHash   uint64
	Seq      uint64
	Rand     uint64
	TaskHash uint64
	Tokens   uint32
	Bytes    uint32
	Kind     uint8
	Bucket   uint8
}

// Decision is one 12-byte record of a decide output, one per input record
// in the same order.
//
//	off size field
//	0   1    keep          u8   1 train fresh, 0 drop (ignored for preload)
//	1   1    bucket        u8   0..3, the bucket to train it in
//	2   1    flags         u8   DecisionReplayable
//	3   1    reserved      u8   zero
//	4   4    weight        f32  loss weight when trained fresh, [0, MaxWeight]
//	8   4    replay_weight f32  loss weight when replayed, [0, MaxWeight]
type Decision struct {
	Keep         bool
	Bucket       uint8
	Replayable   bool
	Weight       float32
	ReplayWeight float32
}

// Eval is one named evaluation score in a mix input.
type Eval struct {
	Name   string
	First  float64
	Latest float64
}

// MixInput is the stream statistics a mix call reads.
//
//	off  size field
//	0    8    step        u64
//	8    8    tokens      u64    tokens trained so far, all slots
//	16   8    rand        u64    uniform random from the host's RNG
//	24   4    phase       u32    set by the daemon (0 unless it uses phases)
//	28   4    num_evals   u32
//	32   64   tokens[8]   u64    tokens trained per slot
//	96   64   samples[8]  u64    samples trained per slot
//	160  32   loss[8]     f32    recent loss per slot, NaN when unknown
//	192  32   avail[8]    u32    fresh slot: kept samples queued; replay
//	                             slot: replay pool size (saturates)
//	224  32   dropped[4]  u64    samples dropped per bucket
//	256  ...  evals             num_evals × { first f64, latest f64,
//	                             name_len u32, name [name_len]u8 }
type MixInput struct {
	Step    uint64
	Tokens  uint64
	Rand    uint64
	Phase   uint32
	SlotTok [NumSlots]uint64
	SlotN   [NumSlots]uint64
	Loss    [NumSlots]float32
	Avail   [NumSlots]uint32
	Dropped [NumBuckets]uint64
	Evals   []Eval
}

// EvalByName returns the eval with the given name.
func (m *MixInput) EvalByName(name string) (Eval, bool) {
	for _, e := range m.Evals {
		if e.Name == name {
			return e, true
		}
	}
	return Eval{}, false
}

// Mix output: 8 × f32 proportions, slot order, 32 bytes. Each must be finite
// and >= 0 and they must sum to 1 ± ProportionTolerance.

var le = binary.LittleEndian

// AppendDecideHeader appends the encoded header to b.
func AppendDecideHeader(b []byte, h DecideHeader) []byte {
	b = le.AppendUint32(b, h.Count)
	b = le.AppendUint32(b, h.Flags)
	b = le.AppendUint64(b, h.Step)
	b = le.AppendUint64(b, h.Tokens)
	return le.AppendUint64(b, 0)
}

// PutSampleMeta writes s into b[:SampleMetaSize].
func PutSampleMeta(b []byte, s *SampleMeta) {
	_ = b[SampleMetaSize-1]
	le.PutUint64(b[0:], s.IDHash)
	le.PutUint64(b[8:], s.Seq)
	le.PutUint64(b[16:], s.Rand)
	le.PutUint64(b[24:], s.TaskHash)
	le.PutUint32(b[32:], s.Tokens)
	le.PutUint32(b[36:], s.Bytes)
	b[40] = s.Kind
	b[41] = s.Bucket
	clear(b[42:48])
}

// ErrShort reports a buffer shorter than its layout needs.
var ErrShort = errors.New("abi: buffer too short")

// ParseDecideHeader decodes the header and checks the buffer holds Count
// records.
func ParseDecideHeader(b []byte) (DecideHeader, error) {
	if len(b) < DecideHeaderSize {
		return DecideHeader{}, ErrShort
	}
	h := DecideHeader{
		Count:  le.Uint32(b[0:]),
		Flags:  le.Uint32(b[4:]),
		Step:   le.Uint64(b[8:]),
		Tokens: le.Uint64(b[16:]),
	}
	if uint64(len(b)) < DecideHeaderSize+uint64(h.Count)*SampleMetaSize {
		return h, fmt.Errorf("decide input: %d records need %d bytes, have %d: %w",
			h.Count, DecideHeaderSize+uint64(h.Count)*SampleMetaSize, len(b), ErrShort)
	}
	return h, nil
}

// GetSampleMeta decodes record i of a decide input buffer into s.
func GetSampleMeta(b []byte, i int, s *SampleMeta) {
	r := b[DecideHeaderSize+i*SampleMetaSize:]
	_ = r[SampleMetaSize-1]
	s.IDHash = le.Uint64(r[0:])
	s.Seq = le.Uint64(r[8:])
	s.Rand = le.Uint64(r[16:])
	s.TaskHash = le.Uint64(r[24:])
	s.Tokens = le.Uint32(r[32:])
	s.Bytes = le.Uint32(r[36:])
	s.Kind = r[40]
	s.Bucket = r[41]
}

// PutDecision writes d into b[:DecisionSize].
func PutDecision(b []byte, d *Decision) {
	_ = b[DecisionSize-1]
	b[0] = 0
	if d.Keep {
		b[0] = 1
	}
	b[1] = d.Bucket
	b[2] = 0
	if d.Replayable {
		b[2] = DecisionReplayable
	}
	b[3] = 0
	le.PutUint32(b[4:], math.Float32bits(d.Weight))
	le.PutUint32(b[8:], math.Float32bits(d.ReplayWeight))
}

// DecodeDecisions decodes and validates a whole decide output into out
// (len(b) must be len(out)*DecisionSize). The common case is checked a
// word at a time; a bad record is re-read by GetDecision for the error.
func DecodeDecisions(b []byte, out []Decision) error {
	if len(b) != len(out)*DecisionSize {
		return fmt.Errorf("decide output is %d bytes for %d decisions", len(b), len(out))
	}
	for i := range out {
		r := b[i*DecisionSize : i*DecisionSize+DecisionSize]
		w := le.Uint32(r)
		wt := math.Float32frombits(le.Uint32(r[4:]))
		rw := math.Float32frombits(le.Uint32(r[8:]))
		// byte 0 in {0,1}, byte 1 in 0..3, byte 2 in {0,1}, byte 3 zero.
		if w&^0x00_01_03_01 != 0 || !validWeight(wt) || !validWeight(rw) {
			_, err := GetDecision(b, i)
			return err
		}
		out[i] = Decision{Keep: w&1 != 0, Bucket: uint8(w >> 8), Replayable: w>>16 != 0, Weight: wt, ReplayWeight: rw}
	}
	return nil
}

// GetDecision decodes and validates record i of a decide output.
func GetDecision(b []byte, i int) (Decision, error) {
	r := b[i*DecisionSize : (i+1)*DecisionSize]
	d := Decision{
		Keep:         r[0] == 1,
		Bucket:       r[1],
		Replayable:   r[2]&DecisionReplayable != 0,
		Weight:       math.Float32frombits(le.Uint32(r[4:])),
		ReplayWeight: math.Float32frombits(le.Uint32(r[8:])),
	}
	switch {
	case r[0] > 1:
		return d, fmt.Errorf("decision %d: keep = %d, want 0 or 1", i, r[0])
	case r[1] >= NumBuckets:
		return d, fmt.Errorf("decision %d: unknown bucket %d", i, r[1])
	case r[2]&^DecisionReplayable != 0 || r[3] != 0:
		return d, fmt.Errorf("decision %d: unknown flags %#x/%#x", i, r[2], r[3])
	case !validWeight(d.Weight):
		return d, fmt.Errorf("decision %d: weight %v out of range [0, %d]", i, d.Weight, MaxWeight)
	case !validWeight(d.ReplayWeight):
		return d, fmt.Errorf("decision %d: replay weight %v out of range [0, %d]", i, d.ReplayWeight, MaxWeight)
	}
	return d, nil
}

func validWeight(w float32) bool {
	// NaN fails both comparisons.
	return w >= 0 && w <= MaxWeight
}

// AppendMixInput appends the encoded statistics to b.
func AppendMixInput(b []byte, m *MixInput) []byte {
	b = le.AppendUint64(b, m.Step)
	b = le.AppendUint64(b, m.Tokens)
	b = le.AppendUint64(b, m.Rand)
	b = le.AppendUint32(b, m.Phase)
	b = le.AppendUint32(b, uint32(len(m.Evals)))
	for _, v := range m.SlotTok {
		b = le.AppendUint64(b, v)
	}
	for _, v := range m.SlotN {
		b = le.AppendUint64(b, v)
	}
	for _, v := range m.Loss {
		b = le.AppendUint32(b, math.Float32bits(v))
	}
	for _, v := range m.Avail {
		b = le.AppendUint32(b, v)
	}
	for _, v := range m.Dropped {
		b = le.AppendUint64(b, v)
	}
	for _, e := range m.Evals {
		b = le.AppendUint64(b, math.Float64bits(e.First))
		b = le.AppendUint64(b, math.Float64bits(e.Latest))
		b = le.AppendUint32(b, uint32(len(e.Name)))
		b = append(b, e.Name...)
	}
	return b
}

// ParseMixInput decodes a mix input buffer into m (reusing m.Evals).
func ParseMixInput(b []byte, m *MixInput) error {
	if len(b) < MixFixedSize {
		return ErrShort
	}
	m.Step = le.Uint64(b[0:])
	m.Tokens = le.Uint64(b[8:])
	m.Rand = le.Uint64(b[16:])
	m.Phase = le.Uint32(b[24:])
	n := le.Uint32(b[28:])
	for i := range NumSlots {
		m.SlotTok[i] = le.Uint64(b[32+8*i:])
		m.SlotN[i] = le.Uint64(b[96+8*i:])
		m.Loss[i] = math.Float32frombits(le.Uint32(b[160+4*i:]))
		m.Avail[i] = le.Uint32(b[192+4*i:])
	}
	for i := range NumBuckets {
		m.Dropped[i] = le.Uint64(b[224+8*i:])
	}
	m.Evals = m.Evals[:0]
	off := MixFixedSize
	for i := uint32(0); i < n; i++ {
		if len(b) < off+20 {
			return fmt.Errorf("mix input: eval %d: %w", i, ErrShort)
		}
		e := Eval{
			First:  math.Float64frombits(le.Uint64(b[off:])),
			Latest: math.Float64frombits(le.Uint64(b[off+8:])),
		}
		l := int(le.Uint32(b[off+16:]))
		off += 20
		if l < 0 || len(b) < off+l {
			return fmt.Errorf("mix input: eval %d name: %w", i, ErrShort)
		}
		e.Name = string(b[off : off+l])
		off += l
		m.Evals = append(m.Evals, e)
	}
	return nil
}

// PutProportions writes p into b[:MixOutputSize].
func PutProportions(b []byte, p *[NumSlots]float32) {
	for i, v := range p {
		le.PutUint32(b[4*i:], math.Float32bits(v))
	}
}

// ParseProportions decodes and validates a mix output and returns the
// proportions normalised to sum exactly 1.
func ParseProportions(b []byte) ([NumSlots]float64, error) {
	var p [NumSlots]float64
	if len(b) != MixOutputSize {
		return p, fmt.Errorf("mix output is %d bytes, want %d", len(b), MixOutputSize)
	}
	var sum float64
	for i := range p {
		v := float64(math.Float32frombits(le.Uint32(b[4*i:])))
		if !(v >= 0) || math.IsInf(v, 0) {
			return p, fmt.Errorf("mix output: proportion %d = %v, want finite >= 0", i, v)
		}
		p[i] = v
		sum += v
	}
	if math.Abs(sum-1) > ProportionTolerance {
		return p, fmt.Errorf("mix output: proportions sum to %v, want 1 ± %v", sum, ProportionTolerance)
	}
	for i := range p {
		p[i] /= sum
	}
	return p, nil
}

// Pack packs a guest pointer and length into the i64 a decide or mix export
// returns: ptr in the high 32 bits, len in the low 32.
func Pack(ptr, n uint32) uint64 { return uint64(ptr)<<32 | uint64(n) }

// Unpack splits a packed i64 into pointer and length.
func Unpack(v uint64) (ptr, n uint32) { return uint32(v >> 32), uint32(v) }

// FNV64 is FNV-1a 64, the hash of ids and task names in SampleMeta.
func FNV64(s string) uint64 {
	if s == "" {
		return 0
	}
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// Uniform maps a random u64 to [0, 1) with 53 bits.
func Uniform(r uint64) float64 { return float64(r>>11) / (1 << 53) }

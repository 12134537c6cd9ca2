// Package recipe holds the logic of the built-in policies as plain Go, with
// no build tags: the wasm modules under policies/<name> wrap these types
// with the guest SDK, and host-side tests and benchmarks run the very same
// code natively as a reference.
package recipe

import (
	"encoding/json"
	"fmt"
	"math"

	"replayd/policies/abi"
)

// Defaults of the built-in policies' parameters.
const (
	// DefaultDAPTKeep is p, the probability a fresh dapt/domain sample is
	// kept. The paper down-samples domain DAPT so that raw text does not
	// crowd out instructions; 0.3 keeps about a third.
	DefaultDAPTKeep = 0.3
	// DefaultReplayWeight is λ, the loss weight of replayed general data.
	DefaultReplayWeight = 1.0
	// DefaultSwitchTokens is where sequential moves from DAPT to SFT when
	// neither switch_step nor switch_tokens is configured.
	DefaultSwitchTokens = 1 << 24
	// DefaultEvalName is the eval score adaptive watches: the held-out loss
	// on general data, as the evaluator reports it.
	DefaultEvalName = "general_loss"
	// DefaultGain scales adaptive's response: replay share grows by
	// gain × the relative rise of the watched loss.
	DefaultGain = 4.0
	// DefaultMaxReplay caps adaptive's replay share.
	DefaultMaxReplay = 0.8
)

// JointMix is joint-replay's default mixture (slot = bucket*2 + replay):
// 40% sft/domain fresh, 20% dapt/domain fresh (after down-sampling),
// 20% dapt/general replay, 20% sft/general replay. Domain data gets 60%, the
// replayed general data 40%, split evenly between raw text and
// instructions so neither skill is forgotten.
var JointMix = [abi.NumSlots]float64{0: 0.2, 3: 0.2, 4: 0.4, 7: 0.2}

// Config is the JSON config every built-in policy accepts (unknown fields
// are refused, absent fields take the defaults above).
type Config struct {
	// DAPTKeep is the keep probability of fresh dapt/domain samples.
	DAPTKeep *float64 `json:"dapt_keep,omitempty"`
	// ReplayWeight is λ, the loss weight of replayed general samples.
	ReplayWeight *float64 `json:"replay_weight,omitempty"`
	// Mix overrides the mixture (8 slots, normalised by the policy).
	Mix *[abi.NumSlots]float64 `json:"mix,omitempty"`
	// ReplayShare, when set, rescales joint-replay's mixture so the two
	// general replay slots get this share in total.
	ReplayShare *float64 `json:"replay_share,omitempty"`
	// SwitchStep moves sequential to its SFT phase at this step (0: unused).
	SwitchStep uint64 `json:"switch_step,omitempty"`
	// SwitchTokens moves sequential to its SFT phase after this many
	// trained tokens (0: DefaultSwitchTokens unless SwitchStep is set).
	SwitchTokens uint64 `json:"switch_tokens,omitempty"`
	// GeneralFresh makes joint-replay and adaptive train general data
	// fresh too (kept, then replayable) instead of replay-only.
	GeneralFresh bool `json:"general_fresh,omitempty"`
	// EvalName, Gain and MaxReplay tune adaptive.
	EvalName  string   `json:"eval_name,omitempty"`
	Gain      *float64 `json:"gain,omitempty"`
	MaxReplay *float64 `json:"max_replay,omitempty"`
}

func orDefault(p *float64, d float64) float64 {
	if p == nil {
		return d
	}
	return *p
}

// params are a parsed, validated Config.
type params struct {
	keep        float64
	keepBelow   uint64 // rand < keepBelow keeps (exact for p = 0 and 1)
	lambda      float32
	mix         [abi.NumSlots]float32
	switchStep  uint64
	switchToks  uint64
	evalName    string
	gain        float64
	maxReplay   float64
	replayShare float64
	genFresh    bool
}

func parse(cfg []byte, defMix [abi.NumSlots]float64) (params, error) {
	var c Config
	if len(cfg) > 0 {
		dec := json.NewDecoder(bytesReader(cfg))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return params{}, fmt.Errorf("policy config: %w", err)
		}
	}
	p := params{
		keep:       orDefault(c.DAPTKeep, DefaultDAPTKeep),
		lambda:     float32(orDefault(c.ReplayWeight, DefaultReplayWeight)),
		switchStep: c.SwitchStep,
		switchToks: c.SwitchTokens,
		evalName:   c.EvalName,
		gain:       orDefault(c.Gain, DefaultGain),
		maxReplay:  orDefault(c.MaxReplay, DefaultMaxReplay),
		genFresh:   c.GeneralFresh,
	}
	if !(p.keep >= 0 && p.keep <= 1) {
		return p, fmt.Errorf("policy config: dapt_keep %v not in [0, 1]", p.keep)
	}
	if !(p.lambda >= 0 && p.lambda <= abi.MaxWeight) {
		return p, fmt.Errorf("policy config: replay_weight %v not in [0, %d]", p.lambda, abi.MaxWeight)
	}
	if !(p.maxReplay >= 0 && p.maxReplay <= 1) || !(p.gain >= 0) {
		return p, fmt.Errorf("policy config: gain %v / max_replay %v out of range", p.gain, p.maxReplay)
	}
	if p.keep >= 1 {
		p.keepBelow = math.MaxUint64
	} else {
		p.keepBelow = uint64(p.keep * (1 << 64))
	}
	if p.evalName == "" {
		p.evalName = DefaultEvalName
	}
	if p.switchStep == 0 && p.switchToks == 0 {
		p.switchToks = DefaultSwitchTokens
	}
	m := defMix
	if c.Mix != nil {
		m = *c.Mix
	}
	if c.ReplayShare != nil {
		r := *c.ReplayShare
		if !(r >= 0 && r <= 1) {
			return p, fmt.Errorf("policy config: replay_share %v not in [0, 1]", r)
		}
		p.replayShare = r
		m = withReplayShare(m, r)
	}
	var sum float64
	for _, v := range m {
		if !(v >= 0) || math.IsInf(v, 0) {
			return p, fmt.Errorf("policy config: mix %v has a negative or non-finite entry", m)
		}
		sum += v
	}
	if sum <= 0 {
		return p, fmt.Errorf("policy config: mix %v sums to 0", m)
	}
	for i, v := range m {
		p.mix[i] = float32(v / sum)
	}
	return p, nil
}

// withReplayShare rescales m so the general replay slots (3 and 7) hold r
// in total and the other slots 1-r, each group keeping its inner ratios.
func withReplayShare(m [abi.NumSlots]float64, r float64) [abi.NumSlots]float64 {
	var rep, rest float64
	for i, v := range m {
		if i == 3 || i == 7 {
			rep += v
		} else {
			rest += v
		}
	}
	out := m
	for i, v := range m {
		switch {
		case (i == 3 || i == 7) && rep > 0:
			out[i] = v / rep * r
		case (i == 3 || i == 7):
			out[i] = r / 2
		case rest > 0:
			out[i] = v / rest * (1 - r)
		}
	}
	return out
}

func (p *params) keepDAPT(r uint64) bool {
	return p.keepBelow == math.MaxUint64 || r < p.keepBelow
}

func isGeneral(b uint8) bool {
	return b == 1 || b == 3
}

// JointReplay is the default policy, the paper's recipe: dapt/domain kept
// with probability dapt_keep, sft/domain always kept, both replayable;
// general data never trained fresh but put in the replay pool with weight
// replay_weight; mixture JointMix.
type JointReplay struct {
	p params
	// words and rw are the kept decision per bucket, precomputed for
	// DecideView: the first word of the record and the replay weight.
	words [abi.NumBuckets]uint32
	rw    [abi.NumBuckets]float32
}

// Init parses the config.
func (j *JointReplay) Init(cfg []byte) (err error) {
	if j.p, err = parse(cfg, JointMix); err != nil {
		return err
	}
	for b := range abi.NumBuckets {
		d := j.decide(uint8(b), uint8(b/2), 0)
		j.words[b], j.rw[b] = abi.DecisionWord(&d), d.ReplayWeight
	}
	return nil
}

// Decide implements the down-sampling and the routing of general data to
// the replay pool.
func (j *JointReplay) Decide(_ *abi.DecideHeader, s *abi.SampleMeta) abi.Decision {
	return j.decide(s.Bucket, s.Kind, s.Rand)
}

// decide needs three fields of a sample. It has one return and no calls
// so that it inlines into DecideView: calls are what costs most in a Go
// wasm guest.
func (j *JointReplay) decide(bucket, kind uint8, rand uint64) abi.Decision {
	d := abi.Decision{Keep: true, Bucket: bucket, Replayable: true, Weight: 1, ReplayWeight: 1}
	if bucket == 1 || bucket == 3 { // general: replay pool (λ), fresh only if asked
		d.Keep, d.ReplayWeight = j.p.genFresh, j.p.lambda
	} else if kind == abi.KindDAPT { // dapt/domain: down-sampled
		d.Keep = rand < j.p.keepBelow || j.p.keepBelow == math.MaxUint64
		d.Replayable = d.Keep
	}
	return d
}

// DecideView decides a whole batch (see sdk.ViewDecider).
func (j *JointReplay) DecideView(_ *abi.DecideHeader, v *abi.DecideView) {
	for i := 0; i < v.Len(); i++ {
		b := v.Bucket(i) & 3
		w := j.words[b]
		if b == 0 && v.Rand(i) >= j.p.keepBelow && j.p.keepBelow != math.MaxUint64 {
			w = 0 // dropped: keep 0, bucket 0, not replayable
		}
		v.SetWord(i, w, 1, j.rw[b])
	}
}

// Mix returns the configured mixture.
func (j *JointReplay) Mix(*abi.MixInput) [abi.NumSlots]float32 { return j.p.mix }

// Adaptive is joint-replay whose general replay share rises when the
// watched eval score (the general held-out loss) rises above its first
// value: share = base × (1 + gain × max(0, (latest-first)/|first|)),
// capped at max_replay; the domain slots share the rest in their ratio.
type Adaptive struct{ JointReplay }

// Mix scales the replay share by the rise of the watched loss.
func (a *Adaptive) Mix(in *abi.MixInput) [abi.NumSlots]float32 {
	m := a.p.mix
	e, ok := in.EvalByName(a.p.evalName)
	if !ok || e.First == 0 || math.IsNaN(e.First) || math.IsNaN(e.Latest) {
		return m
	}
	rise := (e.Latest - e.First) / math.Abs(e.First)
	if rise <= 0 {
		return m
	}
	base := float64(m[3] + m[7])
	share := min(base*(1+a.p.gain*rise), a.p.maxReplay)
	if share <= base {
		return m
	}
	var m64 [abi.NumSlots]float64
	for i, v := range m {
		m64[i] = float64(v)
	}
	m64 = withReplayShare(m64, share)
	for i, v := range m64 {
		m[i] = float32(v)
	}
	return m
}

// Sequential trains DAPT on the domain first, then SFT: every domain sample
// is kept (no down-sampling), general data is dropped, and the mixture is
// all dapt/domain fresh until switch_step (or switch_tokens), then all
// sft/domain fresh. SFT samples arriving during the DAPT phase wait in
// their queue.
type Sequential struct{ p params }

// Init parses the config.
func (q *Sequential) Init(cfg []byte) (err error) {
	q.p, err = parse(cfg, JointMix)
	return err
}

// Decide keeps domain data and drops general data.
func (q *Sequential) Decide(_ *abi.DecideHeader, s *abi.SampleMeta) abi.Decision {
	return seqDecide(s.Bucket)
}

func seqDecide(bucket uint8) abi.Decision {
	dom := bucket == 0 || bucket == 2
	return abi.Decision{Keep: dom, Bucket: bucket, Replayable: dom, Weight: 1, ReplayWeight: 1}
}

// DecideView decides a whole batch (see sdk.ViewDecider).
func (q *Sequential) DecideView(_ *abi.DecideHeader, v *abi.DecideView) {
	for i := 0; i < v.Len(); i++ {
		v.Set(i, seqDecide(v.Bucket(i)))
	}
}

// Mix switches from DAPT to SFT by step or by tokens trained.
func (q *Sequential) Mix(in *abi.MixInput) [abi.NumSlots]float32 {
	var m [abi.NumSlots]float32
	sft := (q.p.switchStep > 0 && in.Step >= q.p.switchStep) ||
		(q.p.switchToks > 0 && in.Tokens >= q.p.switchToks)
	if sft {
		m[4] = 1
	} else {
		m[0] = 1
	}
	return m
}

// Fixed keeps the buckets in keep (dapt/domain with probability dapt_keep),
// drops the rest, replays nothing and trains the fixed mixture mix: the
// ablations no-replay, dapt-only and sft-only.
type Fixed struct {
	p       params
	keep    [abi.NumBuckets]bool
	defMix  [abi.NumSlots]float64
	defKeep float64
}

// NewNoReplay is joint-replay without any replay: domain data only,
// dapt/domain down-sampled, mixture 1/3 dapt : 2/3 sft.
func NewNoReplay() *Fixed {
	return &Fixed{keep: [4]bool{true, false, true, false}, defMix: [8]float64{0: 1, 4: 2}, defKeep: DefaultDAPTKeep}
}

// NewDAPTOnly trains dapt/domain only, every sample.
func NewDAPTOnly() *Fixed {
	return &Fixed{keep: [4]bool{true, false, false, false}, defMix: [8]float64{0: 1}, defKeep: 1}
}

// NewSFTOnly trains sft/domain only.
func NewSFTOnly() *Fixed {
	return &Fixed{keep: [4]bool{false, false, true, false}, defMix: [8]float64{4: 1}, defKeep: 1}
}

// Init parses the config.
func (f *Fixed) Init(cfg []byte) (err error) {
	f.p, err = parse(cfg, f.defMix)
	if err == nil && !hasKey(cfg, "dapt_keep") {
		f.p.keep = f.defKeep
		f.p.keepBelow = math.MaxUint64
		if f.defKeep < 1 {
			f.p.keepBelow = uint64(f.defKeep * (1 << 64))
		}
	}
	return err
}

// Decide keeps the configured buckets; nothing is replayable.
func (f *Fixed) Decide(_ *abi.DecideHeader, s *abi.SampleMeta) abi.Decision {
	return f.decide(s.Bucket, s.Kind, s.Rand)
}

func (f *Fixed) decide(bucket, kind uint8, rand uint64) abi.Decision {
	k := f.keep[bucket&3]
	if k && kind == abi.KindDAPT && bucket == 0 {
		k = rand < f.p.keepBelow || f.p.keepBelow == math.MaxUint64
	}
	return abi.Decision{Keep: k, Bucket: bucket & 3, Weight: 1, ReplayWeight: 1}
}

// DecideView decides a whole batch (see sdk.ViewDecider).
func (f *Fixed) DecideView(_ *abi.DecideHeader, v *abi.DecideView) {
	for i := 0; i < v.Len(); i++ {
		v.Set(i, f.decide(v.Bucket(i), v.Kind(i), v.Rand(i)))
	}
}

// Mix returns the fixed mixture.
func (f *Fixed) Mix(*abi.MixInput) [abi.NumSlots]float32 { return f.p.mix }

func hasKey(cfg []byte, key string) bool {
	if len(cfg) == 0 {
		return false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(cfg, &m) != nil {
		return false
	}
	_, ok := m[key]
	return ok
}

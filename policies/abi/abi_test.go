package abi

import (
	"math"
	"strings"
	"testing"
)

func TestDecisionsRoundTrip(t *testing.T) {
	in := []Decision{
		{Keep: true, Bucket: 3, Replayable: true, Weight: 1, ReplayWeight: 0.5},
		{Bucket: 1, Weight: 0, ReplayWeight: MaxWeight},
		{Keep: true, Bucket: 0, Weight: 2},
	}
	b := make([]byte, len(in)*DecisionSize)
	for i := range in {
		PutDecision(b[i*DecisionSize:], &in[i])
	}
	out := make([]Decision, len(in))
	if err := DecodeDecisions(b, out); err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if in[i] != out[i] {
			t.Errorf("decision %d: %+v, want %+v", i, out[i], in[i])
		}
		if DecisionWord(&in[i]) != le.Uint32(b[i*DecisionSize:]) {
			t.Errorf("decision %d: DecisionWord disagrees with PutDecision", i)
		}
	}
}

func TestDecisionsRefused(t *testing.T) {
	cases := []struct {
		name string
		off  int
		val  []byte
		want string
	}{
		{"keep 2", 0, []byte{2}, "keep = 2"},
		{"bucket 4", 1, []byte{4}, "unknown bucket 4"},
		{"flags", 2, []byte{2}, "unknown flags"},
		{"reserved", 3, []byte{1}, "unknown flags"},
		{"nan weight", 4, f32le(float32(math.NaN())), "weight NaN"},
		{"negative weight", 4, f32le(-1), "weight -1"},
		{"huge replay weight", 8, f32le(1001), "replay weight 1001"},
		{"inf replay weight", 8, f32le(float32(math.Inf(1))), "replay weight +Inf"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Decision{Keep: true, Bucket: 2, Weight: 1, ReplayWeight: 1}
			b := make([]byte, 2*DecisionSize)
			PutDecision(b, &d)
			PutDecision(b[DecisionSize:], &d)
			copy(b[DecisionSize+c.off:], c.val)
			err := DecodeDecisions(b, make([]Decision, 2))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "decision 1") {
				t.Fatalf("error %v, want %q on decision 1", err, c.want)
			}
		})
	}
}

func f32le(f float32) []byte {
	return le.AppendUint32(nil, math.Float32bits(f))
}

func TestMixInputRoundTrip(t *testing.T) {
	in := MixInput{Step: 7, Tokens: 1 << 40, Rand: 3, Phase: 2, Evals: []Eval{{"general_loss", 2, 2.5}, {"x", -1, 0}}}
	for i := range NumSlots {
		in.SlotTok[i], in.SlotN[i], in.Loss[i], in.Avail[i] = uint64(i*100), uint64(i), float32(i)/2, uint32(i*3)
	}
	in.Dropped = [NumBuckets]uint64{1, 2, 3, 4}
	b := AppendMixInput(nil, &in)
	var out MixInput
	if err := ParseMixInput(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Step != in.Step || out.SlotTok != in.SlotTok || out.Loss != in.Loss || out.Avail != in.Avail ||
		out.Dropped != in.Dropped || len(out.Evals) != 2 || out.Evals[0] != in.Evals[0] || out.Evals[1] != in.Evals[1] {
		t.Fatalf("round trip: %+v, want %+v", out, in)
	}
	if err := ParseMixInput(b[:len(b)-1], &out); err == nil {
		t.Fatal("truncated eval accepted")
	}
}

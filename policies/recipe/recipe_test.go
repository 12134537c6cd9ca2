package recipe

import (
	"math"
	"testing"

	"replayd/policies/abi"
)

type policy interface {
	Init([]byte) error
	Decide(*abi.DecideHeader, *abi.SampleMeta) abi.Decision
	Mix(*abi.MixInput) [abi.NumSlots]float32
}

type viewer interface {
	DecideView(*abi.DecideHeader, *abi.DecideView)
}

func metas(n int) []abi.SampleMeta {
	out := make([]abi.SampleMeta, n)
	x := uint64(12345)
	for i := range out {
		x = x*6364136223846793005 + 1442695040888963407
		b := uint8(i % 4)
		out[i] = abi.SampleMeta{Seq: uint64(i + 1), Rand: x, Kind: b / 2, Bucket: b, Tokens: 100}
	}
	return out
}

// TestPolicies checks each built-in policy's decisions and mixture, and
// that its batch path (DecideView, what the wasm module runs) gives the
// same decisions as Decide (what the native reference runs).
func TestPolicies(t *testing.T) {
	cases := []struct {
		name     string
		p        policy
		cfg      string
		keep     [4]float64 // expected kept fraction per bucket
		pooled   [4]bool    // replayable
		mix      [abi.NumSlots]float32
		tolerant bool
	}{
		{"joint-replay", &JointReplay{}, "", [4]float64{0.3, 0, 1, 0}, [4]bool{true, true, true, true}, [8]float32{0: 0.2, 3: 0.2, 4: 0.4, 7: 0.2}, true},
		{"joint-replay keep .5 share .6", &JointReplay{}, `{"dapt_keep":0.5,"replay_share":0.6}`, [4]float64{0.5, 0, 1, 0}, [4]bool{true, true, true, true}, [8]float32{0: 0.4 / 3, 3: 0.3, 4: 0.8 / 3, 7: 0.3}, true},
		{"sequential", &Sequential{}, "", [4]float64{1, 0, 1, 0}, [4]bool{true, false, true, false}, [8]float32{0: 1}, false},
		{"no-replay", NewNoReplay(), "", [4]float64{0.3, 0, 1, 0}, [4]bool{}, [8]float32{0: 1.0 / 3, 4: 2.0 / 3}, true},
		{"dapt-only", NewDAPTOnly(), "", [4]float64{1, 0, 0, 0}, [4]bool{}, [8]float32{0: 1}, false},
		{"sft-only", NewSFTOnly(), "", [4]float64{0, 0, 1, 0}, [4]bool{}, [8]float32{4: 1}, false},
	}
	ms := metas(40000)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.p.Init([]byte(c.cfg)); err != nil {
				t.Fatal(err)
			}
			var kept, n [4]float64
			var h abi.DecideHeader
			want := make([]abi.Decision, len(ms))
			for i := range ms {
				d := c.p.Decide(&h, &ms[i])
				want[i] = d
				n[ms[i].Bucket]++
				if d.Keep {
					kept[ms[i].Bucket]++
				}
				if d.Replayable && d.Keep == false && c.pooled[ms[i].Bucket] == false {
					t.Fatalf("bucket %d: replayable", ms[i].Bucket)
				}
			}
			for b := range 4 {
				f := kept[b] / n[b]
				tol := 4 * math.Sqrt(c.keep[b]*(1-c.keep[b])/n[b])
				if math.Abs(f-c.keep[b]) > tol+1e-12 {
					t.Errorf("bucket %d kept %.4f, want %.2f ± %.4f", b, f, c.keep[b], tol)
				}
			}
			got := c.p.Mix(&abi.MixInput{})
			for s := range got {
				if math.Abs(float64(got[s]-c.mix[s])) > 1e-6 {
					t.Fatalf("mix %v, want %v", got, c.mix)
				}
			}
			v, ok := c.p.(viewer)
			if !ok {
				t.Fatal("no DecideView")
			}
			in := abi.AppendDecideHeader(nil, abi.DecideHeader{Count: uint32(len(ms))})
			in = append(in, make([]byte, len(ms)*abi.SampleMetaSize)...)
			for i := range ms {
				abi.PutSampleMeta(in[abi.DecideHeaderSize+i*abi.SampleMetaSize:], &ms[i])
			}
			out := make([]byte, len(ms)*abi.DecisionSize)
			view, err := abi.NewDecideView(in, out)
			if err != nil {
				t.Fatal(err)
			}
			v.DecideView(&h, &view)
			for i := range ms {
				d, err := abi.GetDecision(out, i)
				if err != nil || d != want[i] {
					t.Fatalf("record %d: DecideView %+v (%v), Decide %+v", i, d, err, want[i])
				}
			}
		})
	}
}

func TestSequentialSwitches(t *testing.T) {
	cases := []struct {
		cfg     string
		in      abi.MixInput
		wantSFT bool
	}{
		{"", abi.MixInput{Tokens: DefaultSwitchTokens - 1}, false},
		{"", abi.MixInput{Tokens: DefaultSwitchTokens}, true},
		{`{"switch_step":10}`, abi.MixInput{Step: 9, Tokens: 1 << 40}, false},
		{`{"switch_step":10}`, abi.MixInput{Step: 10}, true},
		{`{"switch_tokens":500}`, abi.MixInput{Tokens: 500}, true},
	}
	for _, c := range cases {
		var q Sequential
		if err := q.Init([]byte(c.cfg)); err != nil {
			t.Fatal(err)
		}
		m := q.Mix(&c.in)
		if (m[4] == 1) != c.wantSFT || (m[0] == 1) == c.wantSFT {
			t.Errorf("%s at step %d tokens %d: mix %v", c.cfg, c.in.Step, c.in.Tokens, m)
		}
	}
}

func TestAdaptiveRaisesReplay(t *testing.T) {
	var a Adaptive
	if err := a.Init(nil); err != nil {
		t.Fatal(err)
	}
	share := func(first, latest float64) float32 {
		m := a.Mix(&abi.MixInput{Evals: []abi.Eval{{Name: DefaultEvalName, First: first, Latest: latest}}})
		var sum float32
		for _, v := range m {
			sum += v
		}
		if math.Abs(float64(sum-1)) > 1e-5 {
			t.Fatalf("mix sums to %v", sum)
		}
		return m[3] + m[7]
	}
	cases := []struct {
		first, latest float64
		want          float32
	}{
		{2, 2, 0.4},    // no rise: the base share
		{2, 1.5, 0.4},  // falling loss: the base share
		{2, 2.1, 0.48}, // 5% rise × gain 4 = +20%
		{2, 4, 0.8},    // capped at max_replay
	}
	for _, c := range cases {
		if got := share(c.first, c.latest); math.Abs(float64(got-c.want)) > 1e-5 {
			t.Errorf("first %v latest %v: replay share %v, want %v", c.first, c.latest, got, c.want)
		}
	}
}

func TestConfigRefused(t *testing.T) {
	for _, cfg := range []string{`{"dapt_keep":1.5}`, `{"replay_weight":-1}`, `{"mix":[0,0,0,0,0,0,0,0]}`, `{"nope":1}`, `{"replay_share":2}`, `not json`} {
		var j JointReplay
		if err := j.Init([]byte(cfg)); err == nil {
			t.Errorf("config %s accepted", cfg)
		}
	}
}

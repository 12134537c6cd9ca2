package mixer

import (
	"testing"

	"replayd/policies/abi"
	"replayd/policies/recipe"
)

const benchBatch = 4096

func benchMetas() []abi.SampleMeta {
	l := newMemLog()
	m := &Mixer{cfg: Config{Seed: 1}}
	out := make([]abi.SampleMeta, 0, benchBatch)
	for _, s := range l.mixed(benchBatch/4, 2, 3) {
		out = append(out, m.sampleMeta(&s))
	}
	return out
}

// BenchmarkPolicyDecide is the cost per sample of joint-replay's decide in
// the sandbox, amortised over a batch of 4096: encoding, copying into guest
// memory, the call with its deadline, and decoding and validating.
func BenchmarkPolicyDecide(b *testing.B) {
	h := newHost(b, HostConfig{})
	p := loadBuiltin(b, h, "joint-replay", "")
	metas := benchMetas()
	out := make([]abi.Decision, len(metas))
	ctx := testCtx(b)
	b.ResetTimer()
	for b.Loop() {
		if err := p.Decide(ctx, abi.DecideHeader{}, metas, out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(metas)), "ns/sample")
}

// BenchmarkNativeDecide is the same decision in plain Go: the reference.
func BenchmarkNativeDecide(b *testing.B) {
	var p recipe.JointReplay
	if err := p.Init(nil); err != nil {
		b.Fatal(err)
	}
	metas := benchMetas()
	out := make([]abi.Decision, len(metas))
	var h abi.DecideHeader
	b.ResetTimer()
	for b.Loop() {
		for i := range metas {
			out[i] = p.Decide(&h, &metas[i])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(metas)), "ns/sample")
}

// BenchmarkPack draws 8×2048 batches under joint-replay from a stream with
// fresh and replayed data of every bucket (documents of 20–1500 tokens) and
// reports packed (non-padding) tokens per second, mixing included.
func BenchmarkPack(b *testing.B) {
	h := newHost(b, HostConfig{})
	l := newMemLog()
	m, err := New(Config{B: 8, T: 2048, Seed: 1}, l, loadBuiltin(b, h, "joint-replay", ""))
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Preload(l.mixed(500, 20, 1500)); err != nil {
		b.Fatal(err)
	}
	fresh := l.mixed(4000, 20, 1500)
	ctx := testCtx(b)
	tokens := 0
	next := 0
	var eff float64
	batches := 0
	b.ResetTimer()
	for b.Loop() {
		if m.Waiting() < 200 && next < len(fresh) {
			end := min(next+400, len(fresh))
			m.Add(fresh[next:end])
			next = end
		}
		bt, err := m.Next(ctx)
		if err != nil {
			b.Fatal(err)
		}
		tokens += int(bt.Stats.Efficiency*float64(bt.B*bt.T) + 0.5)
		eff += bt.Stats.Efficiency
		batches++
	}
	b.ReportMetric(eff/float64(batches), "efficiency")
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}

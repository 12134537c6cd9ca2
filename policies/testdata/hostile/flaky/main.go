//go:build wasip1

// Command flaky is joint-replay that turns hostile once the batch step
// reaches fail_at_step: it passes the load-time dry run and fails while
// running. Config: {"fail_at_step": N, "how": "trap" | "loop" | "nan"}.
package main

import (
	"encoding/json"
	"math"

	"replayd/policies/abi"
	"replayd/policies/recipe"
	"replayd/policies/sdk"
)

type flaky struct {
	recipe.JointReplay
	FailAt uint64 `json:"fail_at_step"`
	How    string `json:"how"`
	nilp   *abi.Decision
}

func (f *flaky) Init(cfg []byte) error {
	if err := json.Unmarshal(cfg, f); err != nil {
		return err
	}
	return f.JointReplay.Init(nil)
}

func (f *flaky) Decide(h *abi.DecideHeader, s *abi.SampleMeta) abi.Decision {
	if h.Step >= f.FailAt {
		switch f.How {
		case "trap":
			return *f.nilp
		case "loop":
			for s.Seq != 0 {
				f.FailAt++
			}
		case "nan":
			return abi.Decision{Keep: true, Bucket: s.Bucket, Weight: float32(math.NaN())}
		}
	}
	return f.JointReplay.Decide(h, s)
}

// DecideView overrides the one promoted from the embedded JointReplay,
// which the SDK would otherwise call instead of Decide above.
func (f *flaky) DecideView(h *abi.DecideHeader, v *abi.DecideView) {
	var s abi.SampleMeta
	for i := 0; i < v.Len(); i++ {
		v.Meta(i, &s)
		v.Set(i, f.Decide(h, &s))
	}
}

func init() { sdk.Register(&flaky{}) }

func main() {}

package ops

import (
	"sync"
	"time"
)

// LossPoint is the training loss at one step.
type LossPoint struct {
	Step    int                `json:"step"`
	Loss    float64            `json:"loss"`
	Buckets map[string]float64 `json:"buckets"`
}

// MixPoint is the realised mixture (share of target tokens) at one step.
type MixPoint struct {
	Step      int                `json:"step"`
	Fractions map[string]float64 `json:"fractions"`
}

// EvalPoint is one evaluation and the gate's verdict on it.
type EvalPoint struct {
	Step      int                `json:"step"`
	Time      time.Time          `json:"time"`
	Scores    map[string]float64 `json:"scores"`
	Baseline  bool               `json:"baseline,omitempty"`
	Pass      bool               `json:"pass"`
	Reasons   []string           `json:"reasons,omitempty"`
	Published string             `json:"published,omitempty"`
}

// PolicyInfo names the active mixing policy.
type PolicyInfo struct {
	Name  string    `json:"name"`
	Hash  string    `json:"hash"`
	Since int       `json:"since_step"`
	At    time.Time `json:"at"`
}

// Published is one published checkpoint.
type Published struct {
	Version string    `json:"version"`
	Step    int       `json:"step"`
	Time    time.Time `json:"time"`
}

// Snapshot is the daemon's state as served on /status.
type Snapshot struct {
	Started      time.Time    `json:"started"`
	Phase        string       `json:"phase"`
	Ready        bool         `json:"ready"`
	Step         int          `json:"step"`
	Tokens       int64        `json:"tokens"`
	TokensPerSec float64      `json:"tokens_per_second"`
	LogPosition  uint64       `json:"log_position"`
	Loss         []LossPoint  `json:"loss"`
	Mixture      []MixPoint   `json:"mixture"`
	Evals        []EvalPoint  `json:"evals"`
	Policy       PolicyInfo   `json:"policy"`
	Policies     []PolicyInfo `json:"policy_history"`
	Published    []Published  `json:"published"`
	Model        string       `json:"model"`
}

// maxHistory bounds each history; older halves are thinned so a months-long
// run keeps its whole shape in bounded memory.
const maxHistory = 2000

// Status records the daemon's progress for the status page. It is safe for
// concurrent use.
type Status struct {
	mu sync.Mutex
	s  Snapshot
}

// NewStatus starts a status record.
func NewStatus(model string) *Status {
	return &Status{s: Snapshot{Started: time.Now().UTC(), Phase: "starting", Model: model}}
}

// SetPhase records what the daemon is doing ("starting", "training", ...).
func (st *Status) SetPhase(phase string, ready bool) {
	st.mu.Lock()
	st.s.Phase, st.s.Ready = phase, ready
	st.mu.Unlock()
}

// RecordStep records one training step.
func (st *Status) RecordStep(step int, tokens int64, tokPerSec float64, logPos uint64, loss LossPoint, mix MixPoint) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.Step, st.s.Tokens, st.s.TokensPerSec, st.s.LogPosition = step, tokens, tokPerSec, logPos
	st.s.Loss = appendThinned(st.s.Loss, loss)
	st.s.Mixture = appendThinned(st.s.Mixture, mix)
}

// RecordEval records an evaluation and its gate decision.
func (st *Status) RecordEval(e EvalPoint) {
	st.mu.Lock()
	st.s.Evals = appendThinned(st.s.Evals, e)
	st.mu.Unlock()
}

// RecordPolicy records a policy switch.
func (st *Status) RecordPolicy(p PolicyInfo) {
	st.mu.Lock()
	st.s.Policy = p
	st.s.Policies = appendThinned(st.s.Policies, p)
	st.mu.Unlock()
}

// RecordPublished records a published checkpoint.
func (st *Status) RecordPublished(p Published) {
	st.mu.Lock()
	st.s.Published = appendThinned(st.s.Published, p)
	st.mu.Unlock()
}

// Snapshot returns a copy of the state.
func (st *Status) Snapshot() Snapshot {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.s
	s.Loss = append([]LossPoint(nil), s.Loss...)
	s.Mixture = append([]MixPoint(nil), s.Mixture...)
	s.Evals = append([]EvalPoint(nil), s.Evals...)
	s.Policies = append([]PolicyInfo(nil), s.Policies...)
	s.Published = append([]Published(nil), s.Published...)
	return s
}

// appendThinned appends x; when the history is full, every other point of its
// older half is dropped.
func appendThinned[T any](xs []T, x T) []T {
	if len(xs) >= maxHistory {
		half := len(xs) / 2
		kept := xs[:0:0]
		for i := 0; i < half; i += 2 {
			kept = append(kept, xs[i])
		}
		xs = append(kept, xs[half:]...)
	}
	return append(xs, x)
}

package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"replayd/evaluator"
	"replayd/model"
	"replayd/ops"
)

// evalJob is a frozen copy of the model and the run state at one step.
type evalJob struct {
	m     *model.Model
	step  int
	state RunState
}

// requestEval asks for an evaluation after the current step (the HTTP action).
func (d *Daemon) requestEval(context.Context) (any, error) {
	if len(d.cfg.Eval.Suites) == 0 {
		return nil, errors.New("no evaluation suites configured")
	}
	if d.evalBusy.Load() {
		return nil, errors.New("an evaluation is already running")
	}
	d.evalWanted.Store(true)
	return map[string]any{"queued": true}, nil
}

// maybeSnapshotForEval runs on the training goroutine between steps: when an
// evaluation is due and none is running, it clones the weights for it.
func (d *Daemon) maybeSnapshotForEval() {
	if len(d.cfg.Eval.Suites) == 0 || d.evalBusy.Load() {
		return
	}
	d.mu.Lock()
	step := d.state.Step
	every, minutes := d.live.Eval.EverySteps, d.live.Eval.EveryMinutes
	due := every > 0 && step-d.lastEvalSt >= every
	due = due || minutes > 0 && time.Since(d.lastEvalAt) >= time.Duration(minutes*float64(time.Minute))
	d.mu.Unlock()
	if !due && !d.evalWanted.Swap(false) {
		return
	}
	snap, err := d.snapshot(d.cfg.Eval.Threads)
	if err != nil {
		d.log.Error("snapshot for evaluation", "err", err)
		return
	}
	d.mu.Lock()
	st := d.state
	st.NextFreshSeq = d.mix.NextFreshSeq()
	st.Trained = nil
	st.TokensBySlot = copyMap(d.state.TokensBySlot)
	st.SamplesBySlot = copyMap(d.state.SamplesBySlot)
	st.Policies = append([]PolicySpan(nil), d.state.Policies...)
	d.lastEvalSt, d.lastEvalAt = step, time.Now()
	d.mu.Unlock()
	d.evalBusy.Store(true)
	d.evalJobs <- evalJob{m: snap, step: step, state: st}
}

// snapshot copies the training weights for an evaluation: into a new CPU
// model using threads cores, or, evaluating on the GPU, into the one model
// kept there (allocated once: device memory is not the garbage
// collector's). Only one evaluation runs at a time, so it is free to reuse.
func (d *Daemon) snapshot(threads int) (*model.Model, error) {
	if d.evalBackend == nil {
		return d.model.Clone(model.NewCPUBackend(threads))
	}
	if d.evalModel == nil {
		m, err := d.model.Clone(d.evalBackend)
		if err != nil {
			return nil, err
		}
		d.evalModel = m
		return m, nil
	}
	if err := d.evalModel.SetTensors(d.model.Tensors()); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return d.evalModel, nil
}

func copyMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// evalLoop evaluates snapshots, applies the gate and publishes, until ctx ends.
func (d *Daemon) evalLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-d.evalJobs:
			if err := d.evaluateAndGate(ctx, job); err != nil && ctx.Err() == nil {
				d.log.Error("evaluation", "step", job.step, "err", err)
			}
			d.evalBusy.Store(false)
		}
	}
}

func (d *Daemon) evaluator() *evaluator.Evaluator {
	return &evaluator.Evaluator{Suites: d.cfg.Eval.Suites, Workers: 1}
}

// baseline evaluates the starting model once (cached by its weights' hash).
func (d *Daemon) baseline(ctx context.Context) error {
	if len(d.cfg.Eval.Suites) == 0 || d.state.Baseline != nil {
		if d.state.Baseline != nil {
			d.reportEvals(d.state.Baseline)
			d.status.RecordEval(ops.EvalPoint{Step: 0, Baseline: true, Scores: d.state.Baseline, Pass: true})
		}
		return nil
	}
	hash := weightsHash(d.model)
	cache := filepath.Join(d.cfg.DataDir, "eval-cache", hash[:16]+".json")
	var scores evaluator.Scores
	if raw, err := os.ReadFile(cache); err == nil && json.Unmarshal(raw, &scores) == nil {
		d.log.Info("baseline from cache", "hash", hash[:16])
	} else {
		d.status.SetPhase("baseline evaluation", false)
		snap, err := d.snapshot(d.cfg.Train.Threads)
		if err != nil {
			return err
		}
		rep, err := d.evaluator().Run(ctx, evaluator.ModelAdapter{M: snap}, evaluator.ChatCodec{ChatTemplate: d.tmpl, Tok: d.tok})
		if err != nil {
			return fmt.Errorf("baseline evaluation: %w", err)
		}
		scores = rep.Scores
		if err := os.MkdirAll(filepath.Dir(cache), 0o755); err == nil {
			if err := writeJSON(cache, scores); err != nil {
				d.log.Warn("cache baseline", "err", err)
			}
		}
	}
	d.mu.Lock()
	d.state.Baseline, d.state.BaselineHash = scores, hash
	d.mu.Unlock()
	d.reportEvals(scores)
	point := ops.EvalPoint{Step: d.state.Step, Time: time.Now().UTC(), Baseline: true, Pass: true, Scores: scores}
	d.status.RecordEval(point)
	if d.opts.OnEval != nil {
		d.opts.OnEval(point)
	}
	fmt.Fprintf(d.opts.Out, "eval baseline %s\n", formatScores(scores))
	return nil
}

// weightsHash identifies a model's weights: SHA-256 over the tensors in
// name order (name, shape, float32 bits), hashed in memory.
func weightsHash(m *model.Model) string {
	ts := m.Tensors()
	names := make([]string, 0, len(ts))
	for n := range ts {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	var buf []byte
	for _, n := range names {
		t := ts[n]
		buf = append(buf[:0], n...)
		buf = append(buf, 0)
		for _, d := range t.Shape {
			buf = binary.LittleEndian.AppendUint64(buf, uint64(d))
		}
		for _, v := range t.Data {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		}
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Provenance is replayd.json of a published checkpoint.
type Provenance struct {
	Version       string             `json:"version"`
	Step          int                `json:"step"`
	Created       time.Time          `json:"created"`
	TokensBySlot  map[string]int64   `json:"tokens_by_slot"`
	SamplesBySlot map[string]int64   `json:"samples_by_slot"`
	NextFreshSeq  uint64             `json:"next_fresh_seq"`
	Policies      []PolicySpan       `json:"policies"`
	Eval          evaluator.Report   `json:"eval"`
	Baseline      evaluator.Scores   `json:"baseline"`
	Gate          evaluator.Decision `json:"gate"`
	GateRules     []evaluator.Rule   `json:"gate_rules"`
	Base          string             `json:"base,omitempty"`
}

func (d *Daemon) evaluateAndGate(ctx context.Context, job evalJob) error {
	d.status.SetPhase("training + evaluating", true)
	defer d.status.SetPhase("training", true)
	start := time.Now()
	rep, err := d.evaluator().Run(ctx, evaluator.ModelAdapter{M: job.m}, evaluator.ChatCodec{ChatTemplate: d.tmpl, Tok: d.tok})
	if err != nil {
		return err
	}
	d.mu.Lock()
	rules := d.live.Gate.Rules
	baseline, last := d.state.Baseline, d.state.LastScores
	d.mu.Unlock()
	gate, err := evaluator.NewGate(rules)
	if err != nil {
		return err
	}
	dec := gate.Decide(rep.Scores, baseline, last)
	for k, v := range rep.Scores {
		d.metrics.EvalScore.WithLabelValues(k).Set(v)
	}
	d.reportEvals(rep.Scores)
	result := "reject"
	if dec.Pass {
		result = "pass"
	}
	d.metrics.GateDecisions.WithLabelValues(result).Inc()
	point := ops.EvalPoint{Step: job.step, Time: time.Now().UTC(), Scores: rep.Scores, Pass: dec.Pass, Reasons: dec.Reasons()}
	version := ""
	if dec.Pass {
		version = fmt.Sprintf("step-%08d", job.step)
		if err := d.publish(ctx, version, job, rep, dec, rules, baseline); err != nil {
			point.Pass = false
			point.Reasons = append(point.Reasons, "publish failed: "+err.Error())
			d.log.Error("publish", "version", version, "err", err)
			version = ""
		} else {
			point.Published = version
		}
	}
	d.status.RecordEval(point)
	if d.opts.OnEval != nil {
		d.opts.OnEval(point)
	}
	d.log.Info("evaluation", "step", job.step, "seconds", time.Since(start).Seconds(), "gate", result, "published", version, "reasons", strings.Join(dec.Reasons(), "; "))
	fmt.Fprintf(d.opts.Out, "eval step=%d %s gate=%s%s\n", job.step, formatScores(rep.Scores), result, publishedNote(version))
	ev, _ := json.Marshal(map[string]any{"step": job.step, "scores": rep.Scores, "decision": dec, "published": version})
	if err := d.conn.NC.Publish("replayd.events.gate", ev); err != nil {
		d.log.Warn("gate event", "err", err)
	}
	return nil
}

func publishedNote(v string) string {
	if v == "" {
		return ""
	}
	return " published=" + v
}

// publish writes the snapshot in Hugging Face layout with provenance, then
// stores it in the object store and the local directory.
func (d *Daemon) publish(ctx context.Context, version string, job evalJob, rep evaluator.Report, dec evaluator.Decision, rules []evaluator.Rule, baseline evaluator.Scores) error {
	stage, err := os.MkdirTemp(d.cfg.DataDir, ".publish-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := job.m.SaveDType(stage, d.cfg.Publish.DType); err != nil {
		return err
	}
	if err := d.tok.Save(filepath.Join(stage, "tokenizer.json")); err != nil {
		return err
	}
	prov := Provenance{Version: version, Step: job.step, Created: time.Now().UTC(), TokensBySlot: job.state.TokensBySlot,
		SamplesBySlot: job.state.SamplesBySlot, NextFreshSeq: job.state.NextFreshSeq, Policies: job.state.Policies,
		Eval: rep, Baseline: baseline, Gate: dec, GateRules: rules, Base: d.cfg.Model.Base}
	if err := writeJSON(filepath.Join(stage, "replayd.json"), prov); err != nil {
		return err
	}
	if _, err := d.registry.Publish(ctx, version, stage); err != nil {
		return err
	}
	if err := d.local.Publish(version, stage); err != nil {
		return err
	}
	d.mu.Lock()
	d.state.LastPublished, d.state.LastScores = version, rep.Scores
	d.mu.Unlock()
	d.metrics.Published.Inc()
	d.metrics.LastPublished.Set(float64(job.step))
	d.status.RecordPublished(ops.Published{Version: version, Step: job.step, Time: time.Now().UTC()})
	if d.opts.OnPublish != nil {
		d.opts.OnPublish(version, job.m)
	}
	return nil
}

// reportEvals hands group scores to the mixer, so policies see them in their
// mix input (the adaptive policy reads "general_loss").
func (d *Daemon) reportEvals(s evaluator.Scores) {
	for k, v := range s {
		if !strings.Contains(k, "/") || strings.HasPrefix(k, "loss/") {
			d.mix.ReportEval(k, v)
		}
	}
	if v, ok := s["loss/general"]; ok {
		d.mix.ReportEval("general_loss", v)
	}
}

func formatScores(s evaluator.Scores) string {
	keys := make([]string, 0, len(s))
	for k := range s {
		if !strings.Contains(k, "/") || strings.HasPrefix(k, "loss/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%.4g", k, s[k])
	}
	return strings.Join(parts, " ")
}

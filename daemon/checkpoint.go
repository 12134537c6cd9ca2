package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"replayd/evaluator"
	"replayd/internal/atomicfs"
	"replayd/model"
	"replayd/tokenizer"
)

// Files of a training checkpoint directory, beside the model's own files.
const (
	trainingStateFile = "training_state.bin"
	mixerStateFile    = "mixer_state.bin"
	stateFile         = "state.json"
)

// PolicySpan records which policy produced which steps.
type PolicySpan struct {
	Name      string `json:"name"`
	Hash      string `json:"hash"`
	FromStep  int    `json:"from_step"`
	UntilStep int    `json:"until_step,omitempty"`
}

// RunState is the daemon's own part of a training checkpoint.
type RunState struct {
	Step int `json:"step"`
	// NextFreshSeq is the first log sequence not yet handed to the mixer:
	// the ingest reader resumes there.
	NextFreshSeq uint64 `json:"next_fresh_seq"`
	// TokensBySlot counts target tokens trained per bucket slot name.
	TokensBySlot map[string]int64 `json:"tokens_by_slot"`
	// SamplesBySlot counts documents trained per bucket slot name.
	SamplesBySlot map[string]int64 `json:"samples_by_slot"`
	Policies      []PolicySpan     `json:"policies"`
	// Baseline are the base model's scores; BaselineHash names its weights.
	Baseline     evaluator.Scores `json:"baseline,omitempty"`
	BaselineHash string           `json:"baseline_hash,omitempty"`
	// LastPublished and LastScores are the last published version and its
	// scores, the reference of gate rules against "last".
	LastPublished string           `json:"last_published,omitempty"`
	LastScores    evaluator.Scores `json:"last_scores,omitempty"`
	// Trained lists the ids of fresh samples trained on, when the daemon
	// is asked to record them (crash tests); empty otherwise.
	Trained []string `json:"trained,omitempty"`
}

// saveCheckpoint writes a whole training checkpoint into dir atomically: it
// is built in a sibling temporary directory and renamed into place, so a
// crash leaves either the old checkpoint or the new one.
func saveCheckpoint(dir string, m *model.Model, tok *tokenizer.Tokenizer, opt *model.TrainingState, mixerState []byte, st RunState) error {
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, ".checkpoint-")
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := m.Save(tmp); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := tok.Save(filepath.Join(tmp, "tokenizer.json")); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := opt.Save(filepath.Join(tmp, trainingStateFile)); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := atomicfs.WriteFile(filepath.Join(tmp, mixerStateFile), mixerState); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := atomicfs.WriteFile(filepath.Join(tmp, stateFile), raw); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := atomicfs.ReplaceDir(tmp, dir); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// findCheckpoint returns the checkpoint directory to resume from, or "" when
// there is none.
func findCheckpoint(dir string) (string, error) {
	for _, d := range []string{dir, dir + ".old"} {
		_, err := os.Stat(filepath.Join(d, stateFile))
		if err == nil {
			return d, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("look for checkpoint: %w", err)
		}
	}
	return "", nil
}

// loadRunState reads state.json of a checkpoint directory.
func loadRunState(dir string) (RunState, error) {
	raw, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return RunState{}, fmt.Errorf("read run state: %w", err)
	}
	var st RunState
	if err := json.Unmarshal(raw, &st); err != nil {
		return RunState{}, fmt.Errorf("decode %s: %w", filepath.Join(dir, stateFile), err)
	}
	return st, nil
}

// Command bench-e2e measures what the daemon's machinery costs training: the
// daemon trains config small from the stream (default policy, evaluation off,
// checkpoints on), then the bare trainer runs the very same batches from the
// same initial weights. The last line is
// `bench-e2e daemon_tok_s=… bare_tok_s=… ratio=…`.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"replayd/daemon"
	"replayd/mixer"
	"replayd/model"
	"replayd/ops"
	"replayd/tokenizer"
)

func main() {
	data := flag.String("data", "../shared/data", "shared data directory")
	steps := flag.Int("steps", 40, "optimiser steps to time (after one warm-up step)")
	ckpt := flag.Int("checkpoint-every", 20, "training checkpoint every N steps")
	rounds := flag.Int("rounds", 2, "alternating daemon/bare rounds")
	flag.Parse()
	if err := run(*data, *steps, *ckpt, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "bench-e2e:", err)
		os.Exit(1)
	}
}

func run(data string, steps, ckptEvery, rounds int) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "bench-e2e-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ds, err := daemon.ScanData(data, "fin", "gen")
	if err != nil {
		return err
	}
	var files []string
	for _, fs := range ds.Train {
		files = append(files, fs...)
	}
	tok, err := tokenizer.Train(ctx, tokenizer.TrainOptions{VocabSize: 8192}, files...)
	if err != nil {
		return err
	}
	mc, err := model.Preset("small")
	if err != nil {
		return err
	}
	for name, dst := range map[string]*int{"<|begin_of_text|>": &mc.BOSTokenID, "<|end_of_text|>": &mc.EOSTokenID} {
		id, _ := tok.TokenID(name)
		*dst = int(id)
	}
	threads := runtime.GOMAXPROCS(0)
	base := filepath.Join(work, "base")
	m0, err := model.New(mc, model.NewCPUBackend(threads), 1)
	if err != nil {
		return err
	}
	if err := m0.Save(base); err != nil {
		return err
	}
	if err := tok.Save(filepath.Join(base, "tokenizer.json")); err != nil {
		return err
	}

	cfg := ops.DefaultConfig()
	cfg.HTTP.Addr = ""
	cfg.Model.Base = base
	cfg.Train.SeqLen, cfg.Train.BatchSize, cfg.Train.MaxSteps = 256, 8, steps+1
	cfg.Train.CheckpointEvery = ckptEvery
	cfg.Eval.Suites = nil
	tokens := float64(steps * cfg.Train.BatchSize * cfg.Train.SeqLen)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	// Rounds alternate daemon and bare runs so that drift of the machine
	// (page-cache writeback, frequency) falls on both alike.
	var daemonSec, bareSec float64
	for r := 0; r < rounds; r++ {
		cfg.DataDir = filepath.Join(work, fmt.Sprintf("run%d", r))
		var batches []*mixer.Batch
		var first, last time.Time
		opts := daemon.RunOptions{
			SeedData: daemon.SeedFromData(ds, 0, nil),
			OnStep: func(step int, b *mixer.Batch) {
				batches = append(batches, b)
				if step == 1 {
					first = time.Now()
				}
				last = time.Now()
			},
		}
		if err := daemon.Run(ctx, cfg, opts, log, new(slog.LevelVar)); err != nil {
			return err
		}
		if len(batches) != steps+1 {
			return fmt.Errorf("daemon trained %d steps, want %d", len(batches), steps+1)
		}
		d := last.Sub(first).Seconds()

		// The bare trainer: same weights, options and batches, nothing else.
		m, err := model.Load(base, model.NewCPUBackend(threads))
		if err != nil {
			return err
		}
		tr, err := model.NewTrainer(m, daemon.TrainOptions(cfg))
		if err != nil {
			return err
		}
		var start time.Time
		for i, b := range batches {
			if i == 1 {
				start = time.Now()
			}
			if _, err := tr.Step(ctx, []model.Batch{daemon.ToModelBatch(b)}); err != nil {
				return err
			}
		}
		bs := time.Since(start).Seconds()
		fmt.Printf("round %d: daemon_tok_s=%.0f bare_tok_s=%.0f\n", r+1, tokens/d, tokens/bs)
		daemonSec += d
		bareSec += bs
	}
	daemonTPS := tokens * float64(rounds) / daemonSec
	bareTPS := tokens * float64(rounds) / bareSec
	fmt.Printf("steps=%d batch=%dx%d threads=%d checkpoint_every=%d rounds=%d\n", steps, cfg.Train.BatchSize, cfg.Train.SeqLen, threads, cfg.Train.CheckpointEvery, rounds)
	fmt.Printf("bench-e2e daemon_tok_s=%.0f bare_tok_s=%.0f ratio=%.3f\n", daemonTPS, bareTPS, daemonTPS/bareTPS)
	return nil
}

// Command benchtrain times training steps of a preset model on random
// tokens and prints one line: "go preset=… batch=… seq=… steps=… tok_s=… peak_mb=…".
// scripts/bench-train.sh runs it beside the PyTorch equivalent.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"replayd/model"
)

func main() {
	preset := flag.String("preset", "small", "model preset")
	batch := flag.Int("batch", 8, "sequences per step")
	steps := flag.Int("steps", 5, "timed steps")
	warmup := flag.Int("warmup", 1, "untimed steps first")
	threads := flag.Int("threads", 0, "CPU threads (0: GOMAXPROCS)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		pf, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtrain:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			fmt.Fprintln(os.Stderr, "benchtrain:", err)
			os.Exit(1)
		}
		defer pf.Close()
		defer pprof.StopCPUProfile()
	}
	if err := run(*preset, *batch, *steps, *warmup, *threads); err != nil {
		fmt.Fprintln(os.Stderr, "benchtrain:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(preset string, B, steps, warmup, threads int) error {
	cfg, err := model.Preset(preset)
	if err != nil {
		return err
	}
	be := model.NewCPUBackend(threads)
	m, err := model.New(cfg, be, 1)
	if err != nil {
		return err
	}
	tr, err := model.NewTrainer(m, model.DefaultTrainOptions())
	if err != nil {
		return err
	}
	T := cfg.MaxPositionEmbeddings
	rng := rand.New(rand.NewPCG(1, 2))
	toks := make([]int32, B*T)
	for i := range toks {
		toks[i] = int32(rng.IntN(cfg.VocabSize))
	}
	b := model.SingleDocBatch(B, T, toks)
	ctx := context.Background()
	var start time.Time
	var loss float64
	for i := 0; i < warmup+steps; i++ {
		if i == warmup {
			start = time.Now()
		}
		r, err := tr.Step(ctx, []model.Batch{b})
		if err != nil {
			return err
		}
		loss = r.Loss
	}
	el := time.Since(start).Seconds()
	fmt.Printf("go preset=%s backend=%s batch=%d seq=%d steps=%d params=%d loss=%.4f step_s=%.3f tok_s=%.1f peak_mb=%.0f\n",
		preset, be.Name(), B, T, steps, m.NumParams(), loss, el/float64(steps), float64(steps*B*T)/el, peakMB())
	return nil
}

// peakMB is the resident-set high-water mark (VmHWM) of this process.
func peakMB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return -1
}

// Command gpubench times training steps of a LLaMA config on the CUDA
// backend (built with -tags cuda) and prints one line:
//
//	go backend=… precision=… attention=… params=… batch=… seq=… steps=… loss=… step_s=… tok_s=… flops_per_tok=… mfu=…
//
// The default config is the ~125M-parameter one of scripts/gpu-check.sh
// (hidden 768, 12 layers, 12 heads, 4 kv heads, intermediate 2048, vocab
// 32768, seq 1024), the same as gpu/bench_torch.py. MFU counts 6·params +
// 6·layers·seq·hidden FLOPs per token (GEMMs forward and backward plus
// causal attention) against -peak FLOP/s.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"replayd/gpu"
	"replayd/model"
)

func main() {
	cfg, _ := model.Preset("tiny")
	flag.IntVar(&cfg.HiddenSize, "hidden", 768, "hidden size")
	flag.IntVar(&cfg.NumHiddenLayers, "layers", 12, "layers")
	flag.IntVar(&cfg.NumAttentionHeads, "heads", 12, "attention heads")
	flag.IntVar(&cfg.NumKeyValueHeads, "kv-heads", 4, "key/value heads")
	flag.IntVar(&cfg.IntermediateSize, "intermediate", 2048, "MLP size")
	flag.IntVar(&cfg.VocabSize, "vocab", 32768, "vocabulary")
	flag.IntVar(&cfg.MaxPositionEmbeddings, "seq", 1024, "sequence length")
	batch := flag.Int("batch", 8, "sequences per step")
	steps := flag.Int("steps", 10, "timed steps")
	warmup := flag.Int("warmup", 2, "untimed steps first")
	prec := flag.String("precision", "bf16", "GEMM precision: fp32, tf32, bf16")
	noBLAS := flag.Bool("no-cublas", false, "use the own GEMM kernel")
	plain := flag.Bool("plain-attention", false, "float32 attention kernels even in bf16 (no tensor-core attention)")
	peak := flag.Float64("peak", 790e12, "peak FLOP/s for MFU (H200 dense bf16)")
	flag.Parse()
	opts := gpu.Options{NoCuBLAS: *noBLAS, PlainAttention: *plain}
	if err := run(cfg, *batch, *steps, *warmup, *prec, opts, *peak); err != nil {
		fmt.Fprintln(os.Stderr, "gpubench:", err)
		os.Exit(1)
	}
}

func run(cfg model.Config, B, steps, warmup int, precName string, opts gpu.Options, peak float64) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	prec, err := gpu.ParsePrecision(precName)
	if err != nil {
		return err
	}
	opts.Precision = prec
	be, err := gpu.New(opts)
	if err != nil {
		return err
	}
	defer func() {
		if err := be.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "gpubench:", err)
		}
	}()
	m, err := model.New(cfg, be, 1)
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	tr, err := model.NewTrainer(m, model.DefaultTrainOptions())
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
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
			be.Sync()
			start = time.Now()
		}
		r, err := tr.Step(ctx, []model.Batch{b})
		if err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		loss = r.Loss
	}
	be.Sync()
	el := time.Since(start).Seconds()
	tokS := float64(steps*B*T) / el
	flopsTok := 6*float64(m.NumParams()) + 6*float64(cfg.NumHiddenLayers*T*cfg.HiddenSize)
	attn := "float32"
	if be.TensorCoreAttention(cfg.HeadDim()) {
		attn = "tensor-core"
	}
	fmt.Printf("go backend=%q precision=%s attention=%s params=%d batch=%d seq=%d steps=%d loss=%.4f step_s=%.4f tok_s=%.1f flops_per_tok=%.4g mfu=%.4f\n",
		be.Name(), prec, attn, m.NumParams(), B, T, steps, loss, el/float64(steps), tokS, flopsTok, tokS*flopsTok/peak)
	return nil
}

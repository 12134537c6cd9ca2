package model

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// GenerateOptions control decoding. Temperature 0 is greedy.
type GenerateOptions struct {
	Temperature float64
	// TopK keeps the K most likely tokens (0: all).
	TopK int
	// TopP keeps the smallest set of tokens whose probability reaches P (0 or 1: all).
	TopP float64
	// Seed seeds sampling, so a call is reproducible.
	Seed uint64
	// StopIDs end generation like EOS does; the stop token is not returned.
	StopIDs []int32
	// NoEOS disables stopping at the config's eos_token_id.
	NoEOS bool
}

// kvCache holds per-layer keys and values of one sequence and the buffers
// of an incremental forward pass over up to rows new tokens.
type kvCache struct {
	cap, rows                                    int
	k, v                                         []Tensor
	kDoc, pos                                    IntTensor
	qDoc                                         IntTensor
	tok                                          IntTensor
	x, xmid, h, q, att, lse, gate, up, act, rstd Tensor
	logits                                       Tensor
}

func newKVCache(m *Model, capacity, rows int) *kvCache {
	be, c := m.be, m.Config
	D, I, KVD, H := c.HiddenSize, c.IntermediateSize, c.KVDim(), c.NumAttentionHeads
	kc := &kvCache{cap: capacity, rows: rows}
	for range m.layers {
		kc.k = append(kc.k, be.Alloc(capacity*KVD))
		kc.v = append(kc.v, be.Alloc(capacity*KVD))
	}
	// One sequence: every position is document 0.
	kc.kDoc, kc.qDoc, kc.pos, kc.tok = be.AllocInt(capacity), be.AllocInt(rows), be.AllocInt(rows), be.AllocInt(rows)
	kc.x, kc.xmid, kc.h, kc.q, kc.att = be.Alloc(rows*D), be.Alloc(rows*D), be.Alloc(rows*D), be.Alloc(rows*D), be.Alloc(rows*D)
	kc.lse, kc.rstd = be.Alloc(rows*H), be.Alloc(rows)
	kc.gate, kc.up, kc.act = be.Alloc(rows*I), be.Alloc(rows*I), be.Alloc(rows*I)
	kc.logits = be.Alloc(c.VocabSize)
	return kc
}

// free releases the cache's buffers (a no-op on the CPU, where Go's heap
// holds them; a GPU's are freed now).
func (kc *kvCache) free(be Backend) {
	for _, t := range append(append([]Tensor{kc.x, kc.xmid, kc.h, kc.q, kc.att, kc.lse, kc.gate, kc.up, kc.act,
		kc.rstd, kc.logits}, kc.k...), kc.v...) {
		be.Free(t)
	}
	for _, t := range []IntTensor{kc.kDoc, kc.pos, kc.qDoc, kc.tok} {
		be.FreeInt(t)
	}
}

// step runs tokens (at positions off..off+n-1) through the model, appending
// their keys and values to the cache, and returns the logits of the last one.
func (m *Model) step(kc *kvCache, tokens []int32, off int) []float32 {
	be, c := m.be, m.Config
	n := len(tokens)
	D, I, KVD, hd := c.HiddenSize, c.IntermediateSize, c.KVDim(), c.HeadDim()
	eps := float32(c.RMSNormEps)
	pos := make([]int32, kc.rows)
	for i := 0; i < n; i++ {
		pos[i] = int32(off + i)
	}
	tk := make([]int32, kc.rows)
	copy(tk, tokens)
	be.UploadInt(kc.pos, pos)
	be.UploadInt(kc.tok, tk)
	v := func(t Tensor, width int) Tensor { return be.View(t, 0, n*width) }
	x, xmid, h, q, att := v(kc.x, D), v(kc.xmid, D), v(kc.h, D), v(kc.q, D), v(kc.att, D)
	gate, up, act := v(kc.gate, I), v(kc.up, I), v(kc.act, I)
	be.Embedding(x, m.embed.W, kc.tok, n, D)
	shape := AttnShape{B: 1, Tq: n, Tk: kc.cap, QOffset: off, Heads: c.NumAttentionHeads, KVHeads: c.NumKeyValueHeads, HeadDim: hd}
	for l, L := range m.layers {
		kNew, vNew := be.View(kc.k[l], off*KVD, n*KVD), be.View(kc.v[l], off*KVD, n*KVD)
		be.RMSNorm(h, kc.rstd, x, L.ln1.W, n, D, eps)
		be.MatMul(q, h, L.q.W, n, D, D, false)
		be.MatMul(kNew, h, L.k.W, n, D, KVD, false)
		be.MatMul(vNew, h, L.v.W, n, D, KVD, false)
		be.RoPE(q, kc.pos, m.cos, m.sin, n, c.NumAttentionHeads, hd, false)
		be.RoPE(kNew, kc.pos, m.cos, m.sin, n, c.NumKeyValueHeads, hd, false)
		be.Attention(att, kc.lse, q, kc.k[l], kc.v[l], kc.qDoc, kc.kDoc, shape)
		be.Copy(xmid, x)
		be.MatMul(xmid, att, L.o.W, n, D, D, true)
		be.RMSNorm(h, kc.rstd, xmid, L.ln2.W, n, D, eps)
		be.MatMul(gate, h, L.gate.W, n, D, I, false)
		be.MatMul(up, h, L.up.W, n, D, I, false)
		be.SwiGLU(act, gate, up, n*I)
		be.Copy(x, xmid)
		be.MatMul(x, act, L.down.W, n, I, D, true)
	}
	last, hl := be.View(x, (n-1)*D, D), be.View(h, 0, D)
	be.RMSNorm(hl, kc.rstd, last, m.norm.W, 1, D, eps)
	be.MatMul(kc.logits, hl, m.lmHead.W, 1, D, c.VocabSize, false)
	out := make([]float32, c.VocabSize)
	be.Download(out, kc.logits)
	return out
}

// Generate continues prompt with up to maxNew tokens, stopping at EOS or a
// stop id (not included in the result) or at max_position_embeddings. It
// returns the new tokens only.
func (m *Model) Generate(ctx context.Context, prompt []int32, maxNew int, opts GenerateOptions) ([]int32, error) {
	c := m.Config
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generate: empty prompt")
	}
	for _, t := range prompt {
		if t < 0 || int(t) >= c.VocabSize {
			return nil, fmt.Errorf("generate: prompt token %d out of vocabulary", t)
		}
	}
	if len(prompt) >= c.MaxPositionEmbeddings {
		return nil, fmt.Errorf("generate: prompt of %d tokens leaves no room in %d positions", len(prompt), c.MaxPositionEmbeddings)
	}
	maxNew = min(maxNew, c.MaxPositionEmbeddings-len(prompt))
	if maxNew <= 0 {
		return nil, nil
	}
	stop := map[int32]bool{}
	if !opts.NoEOS {
		stop[int32(c.EOSTokenID)] = true
		for _, id := range c.ExtraEOSTokenIDs {
			stop[int32(id)] = true
		}
	}
	for _, s := range opts.StopIDs {
		stop[s] = true
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x6e6))
	kc := newKVCache(m, len(prompt)+maxNew, len(prompt))
	defer kc.free(m.be)
	logits := m.step(kc, prompt, 0)
	var out []int32
	for {
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("generate: %w", err)
		}
		next := sample(logits, opts, rng)
		if stop[next] {
			break
		}
		out = append(out, next)
		if len(out) == maxNew {
			break
		}
		logits = m.step(kc, []int32{next}, len(prompt)+len(out)-1)
	}
	return out, nil
}

// sample picks the next token: argmax at temperature 0 (lowest id on
// ties), otherwise a draw from the tempered, top-k/top-p filtered softmax.
func sample(logits []float32, o GenerateOptions, rng *rand.Rand) int32 {
	if o.Temperature <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return int32(best)
	}
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	if o.TopK > 0 && o.TopK < len(idx) {
		idx = idx[:o.TopK]
	}
	mx := float64(logits[idx[0]])
	p := make([]float64, len(idx))
	var sum float64
	for i, j := range idx {
		p[i] = math.Exp((float64(logits[j]) - mx) / o.Temperature)
		sum += p[i]
	}
	if o.TopP > 0 && o.TopP < 1 {
		var cum float64
		for i := range p {
			cum += p[i] / sum
			if cum >= o.TopP {
				p, idx = p[:i+1], idx[:i+1]
				break
			}
		}
		sum = 0
		for _, v := range p {
			sum += v
		}
	}
	r := rng.Float64() * sum
	for i, v := range p {
		r -= v
		if r < 0 {
			return int32(idx[i])
		}
	}
	return int32(idx[len(idx)-1])
}

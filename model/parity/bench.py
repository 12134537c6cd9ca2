#!/usr/bin/env python3
"""PyTorch side of `make bench-train`: the same LLaMA (reference.forward),
AdamW and clipping as replayd's Trainer, on random tokens, 2 threads.
Prints: torch preset=… tok_s=… peak_mb=…"""
import argparse
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import forward, weighted_loss  # noqa: E402

PRESETS = {
    "small": dict(vocab_size=8192, hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                  intermediate_size=768, max_position_embeddings=256),
    "base": dict(vocab_size=16384, hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                 intermediate_size=1408, max_position_embeddings=512),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = dict(PRESETS[a.preset], rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True)
    D, I, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    kvd = D // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    for l in range(L):
        p = f"model.layers.{l}."
        shapes.update({p + "self_attn.q_proj.weight": (D, D), p + "self_attn.k_proj.weight": (kvd, D),
                       p + "self_attn.v_proj.weight": (kvd, D), p + "self_attn.o_proj.weight": (D, D),
                       p + "mlp.gate_proj.weight": (I, D), p + "mlp.up_proj.weight": (I, D),
                       p + "mlp.down_proj.weight": (D, I), p + "input_layernorm.weight": (D,),
                       p + "post_attention_layernorm.weight": (D,)})
    P = {n: (torch.ones(s) if len(s) == 1 else torch.randn(s) * 0.02).requires_grad_(True) for n, s in shapes.items()}
    decay = [P[n] for n in P if n.endswith("proj.weight")]
    rest = [P[n] for n in P if not n.endswith("proj.weight")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    B, T = a.batch, cfg["max_position_embeddings"]
    toks = torch.randint(0, V, (B, T))
    targets = torch.cat([toks[:, 1:], torch.full((B, 1), -1)], dim=1)
    weights = (targets >= 0).float()
    pos = torch.arange(T).expand(B, T)
    docs = torch.zeros(B, T, dtype=torch.long)
    params = list(P.values())
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, _ = weighted_loss(forward(P, cfg, toks, pos, docs), targets, weights)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    el = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch preset={a.preset} threads={a.threads} batch={B} seq={T} steps={a.steps} loss={loss.item():.4f} "
          f"step_s={el / a.steps:.3f} tok_s={a.steps * B * T / el:.1f} peak_mb={peak:.0f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch twin of gpu/cmd/gpubench: the same LLaMA config, batch and optimiser
on the same GPU, bf16 autocast with float32 master weights (what gpubench's
-precision bf16 does for GEMMs), fused AdamW when available, SDPA attention.
Prints one line: "torch tok_s=… step_s=… params=… loss=…". Plain torch only
(no transformers) so it runs wherever torch with CUDA does."""

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    """float32 RMSNorm like HF LlamaRMSNorm (nn.RMSNorm needs torch >= 2.4)."""

    def __init__(self, d, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        dt = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


class Block(nn.Module):
    def __init__(self, d, h, kv, inter, eps):
        super().__init__()
        self.h, self.kv, self.hd = h, kv, d // h
        self.n1, self.n2 = RMSNorm(d, eps), RMSNorm(d, eps)
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, kv * self.hd, bias=False)
        self.v = nn.Linear(d, kv * self.hd, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.gate = nn.Linear(d, inter, bias=False)
        self.up = nn.Linear(d, inter, bias=False)
        self.down = nn.Linear(inter, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, D = x.shape
        h = self.n1(x)
        q = self.q(h).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.k(h).view(B, T, self.kv, self.hd).transpose(1, 2)
        v = self.v(h).view(B, T, self.kv, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        rep = self.h // self.kv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        a = causal_attention(q, k, v)
        x = x + self.o(a.transpose(1, 2).reshape(B, T, D))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def causal_attention(q, k, v):
    """SDPA (flash attention on a GPU) where torch has it (>= 2.0), else the
    plain softmax(QK^T/sqrt(d))V with a causal mask (torch 1.13 on the CPU
    dry run)."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.shape[-2]
    s = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    return torch.softmax(s.masked_fill(mask, float("-inf")).float(), dim=-1).to(q.dtype) @ v


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class LLaMA(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.emb = nn.Embedding(a.vocab, a.hidden)
        self.blocks = nn.ModuleList(Block(a.hidden, a.heads, a.kv_heads, a.intermediate, 1e-5) for _ in range(a.layers))
        self.norm = RMSNorm(a.hidden, 1e-5)
        hd = a.hidden // a.heads
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        f = torch.outer(torch.arange(a.seq).float(), inv)
        emb = torch.cat((f, f), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, tok):
        x = self.emb(tok)
        T = tok.shape[1]
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        for b in self.blocks:
            x = b(x, cos, sin)
        return self.norm(x) @ self.emb.weight.t()  # tied head


def main():
    ap = argparse.ArgumentParser()
    for name, val in [("hidden", 768), ("layers", 12), ("heads", 12), ("kv-heads", 4), ("intermediate", 2048),
                      ("vocab", 32768), ("seq", 1024), ("batch", 8), ("steps", 10), ("warmup", 2)]:
        ap.add_argument("--" + name, type=int, default=val)
    ap.add_argument("--device", default="cuda", help="cuda (cpu only to smoke-test the script)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    a = ap.parse_args()
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.backends.cuda.matmul.allow_tf32 = False
    m = LLaMA(a).to(dev)
    if a.compile:
        m = torch.compile(m)
    params = sum(p.numel() for p in m.parameters())
    try:
        opt = torch.optim.AdamW(m.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(m.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator(device="cpu").manual_seed(1)
    tok = torch.randint(0, a.vocab, (a.batch, a.seq), generator=g).to(dev)
    tgt = torch.roll(tok, -1, dims=1)
    tgt[:, -1] = -100
    loss = None
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            sync()
            t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            logits = m(tok)
        loss = F.cross_entropy(logits.float().view(-1, a.vocab), tgt.view(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
    sync()
    el = time.perf_counter() - t0
    tok_s = a.steps * a.batch * a.seq / el
    print(f"torch tok_s={tok_s:.1f} step_s={el / a.steps:.4f} params={params} loss={loss.item():.4f} "
          f"torch={torch.__version__} compile={a.compile} peak_mem_gb={(torch.cuda.max_memory_allocated() if dev.type == 'cuda' else 0) / 2**30:.1f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch reference of replayd's LLaMA model, for the Go parity tests.

Plain torch (no transformers), mirroring Hugging Face's modeling_llama:
RMSNorm in fp32, rotate_half RoPE, GQA through repeat_kv, SwiGLU MLP,
causal + same-document attention through an explicit additive mask.

Usage: reference.py DIR
DIR holds config.json, model.safetensors (written by Go), batch.json and
train.json. Writes DIR/ref.safetensors (logits, nll, loss, gradients,
parameters after the AdamW steps, logits after them) and DIR/torch_model/
(config.json + model.safetensors written here, in HF naming) so that the Go
side checks it can load torch-written files.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (None, 2), "I32": (np.int32, 4), "I64": (np.int64, 8)}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        buf = data[a:b]
        if e["dtype"] == "BF16":
            u = np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=DTYPES[e["dtype"]][0]).astype(np.float32)
        out[name] = torch.from_numpy(arr.copy()).reshape(e["shape"])
    return out


def write_safetensors(path, tensors, metadata=None, bf16=False):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().float()
        if bf16:
            b = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        else:
            b = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "BF16" if bf16 else "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def rms_norm(x, w, eps):
    # LlamaRMSNorm: variance in float32, weight * normalised.
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(positions, head_dim, theta):
    # LlamaRotaryEmbedding (default rope type), float32.
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = positions[..., None].float() * inv_freq  # [B,T,hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def repeat_kv(x, n_rep):
    b, kvh, t, hd = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, kvh, n_rep, t, hd).reshape(b, kvh * n_rep, t, hd)


def forward(P, cfg, tokens, positions, doc_ids):
    B, T = tokens.shape
    D, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = D // H
    eps = cfg["rms_norm_eps"]
    x = F.embedding(tokens, P["model.embed_tokens.weight"])
    cos, sin = rope_cos_sin(positions, hd, cfg["rope_theta"])
    cos, sin = cos[:, None], sin[:, None]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    same_doc = doc_ids[:, :, None] == doc_ids[:, None, :]
    allowed = (causal[None] & same_doc)[:, None]  # [B,1,T,T]
    mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, torch.finfo(torch.float32).min)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, P[p + "input_layernorm.weight"], eps)
        q = F.linear(h, P[p + "self_attn.q_proj.weight"]).view(B, T, H, hd).transpose(1, 2)
        k = F.linear(h, P[p + "self_attn.k_proj.weight"]).view(B, T, KV, hd).transpose(1, 2)
        v = F.linear(h, P[p + "self_attn.v_proj.weight"]).view(B, T, KV, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, H // KV), repeat_kv(v, H // KV)
        att = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(hd) + mask
        att = F.softmax(att, dim=-1, dtype=torch.float32)
        o = torch.matmul(att, v).transpose(1, 2).reshape(B, T, D)
        x = x + F.linear(o, P[p + "self_attn.o_proj.weight"])
        h = rms_norm(x, P[p + "post_attention_layernorm.weight"], eps)
        g = F.linear(h, P[p + "mlp.gate_proj.weight"])
        u = F.linear(h, P[p + "mlp.up_proj.weight"])
        x = x + F.linear(F.silu(g) * u, P[p + "mlp.down_proj.weight"])
    x = rms_norm(x, P["model.norm.weight"], eps)
    head = P["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else P["lm_head.weight"]
    return F.linear(x, head)


def weighted_loss(logits, targets, weights):
    V = logits.shape[-1]
    nll = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none", ignore_index=-1)
    w = torch.where(targets.reshape(-1) >= 0, weights.reshape(-1), torch.zeros_like(weights.reshape(-1)))
    return (w * nll).sum() / w.sum(), nll


def main():
    d = sys.argv[1]
    torch.manual_seed(0)
    nthreads = int(os.environ.get("PARITY_THREADS", "1"))
    torch.set_num_threads(nthreads)
    cfg = json.load(open(os.path.join(d, "config.json")))
    batch = json.load(open(os.path.join(d, "batch.json")))
    train = json.load(open(os.path.join(d, "train.json")))
    W = read_safetensors(os.path.join(d, "model.safetensors"))
    names = sorted(W)
    P = {n: W[n].clone().requires_grad_(True) for n in names}
    B, T = batch["B"], batch["T"]
    as_t = lambda key, dt: torch.tensor(batch[key], dtype=dt).view(B, T)
    tokens, targets = as_t("tokens", torch.long), as_t("targets", torch.long)
    positions, docs = as_t("positions", torch.long), as_t("doc_ids", torch.long)
    weights = as_t("weights", torch.float32)

    out = {}
    logits = forward(P, cfg, tokens, positions, docs)
    loss, nll = weighted_loss(logits, targets, weights)
    loss.backward()
    out["logits"] = logits.detach().reshape(B * T, -1)
    out["nll"] = nll.detach()
    out["loss"] = loss.detach().reshape(1)
    for n in names:
        out["grad." + n] = P[n].grad.detach().clone()

    # AdamW steps with global-norm clipping, as replayd's Trainer does them.
    decay, no_decay = [], []
    for n in names:
        is_norm = n.endswith("norm.weight")
        is_embed = n == "model.embed_tokens.weight"
        (no_decay if is_norm or (is_embed and not train["decay_embeddings"]) else decay).append(P[n])
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": train["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=train["lr"], betas=(train["beta1"], train["beta2"]), eps=train["eps"])
    norms = []
    for _ in range(train["steps"]):
        opt.zero_grad()
        logits = forward(P, cfg, tokens, positions, docs)
        loss, _ = weighted_loss(logits, targets, weights)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_([P[n] for n in names], train["clip"])))
        opt.step()
    out["grad_norms"] = torch.tensor(norms, dtype=torch.float32)
    for n in names:
        out["after." + n] = P[n].detach().clone()
    with torch.no_grad():
        out["logits_after"] = forward(P, cfg, tokens, positions, docs).reshape(B * T, -1)
    write_safetensors(os.path.join(d, "ref.safetensors"), out)

    # The updated model, written by this script in HF layout, F32 and BF16.
    for sub, bf16 in (("torch_model", False), ("torch_model_bf16", True)):
        md = os.path.join(d, sub)
        os.makedirs(md, exist_ok=True)
        write_safetensors(os.path.join(md, "model.safetensors"), {n: P[n] for n in names}, {"format": "pt"}, bf16=bf16)
        c2 = dict(cfg)
        c2["torch_dtype"] = "bfloat16" if bf16 else "float32"
        json.dump(c2, open(os.path.join(md, "config.json"), "w"), indent=2)
    with torch.no_grad():
        Pb = {n: P[n].detach().to(torch.bfloat16).float() for n in names}
        lb = forward(Pb, cfg, tokens, positions, docs).reshape(B * T, -1)
    write_safetensors(os.path.join(d, "ref_bf16.safetensors"), {"logits": lb})


if __name__ == "__main__":
    main()

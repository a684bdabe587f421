#!/usr/bin/env python3
"""The PyTorch twin of samples/train_charlm, for bench/run_charlm.sh.

The same model (pre-norm decoder-only transformer, causal attention, GELU MLP, tied
embeddings), the same corpus and vocabulary, the same initial weights (--init: the
safetensors file `train_charlm --save-init` writes), the same batches (the same
splitmix64 stream picks the windows), the same AdamW, clipping and learning-rate
schedule. So the two losses follow each other step by step, up to float rounding, and
the tokens/s are of the same work.

Attention uses F.scaled_dot_product_attention(is_causal=True), PyTorch's fused CPU
kernel: the fastest thing a PyTorch user writes, not a strawman.

Prints one JSON line: {"framework": "pytorch", "tokens_per_s": ..., "val_loss": ..., ...}.
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MASK64 = (1 << 64) - 1


def splitmix64(state):
    """One step of splitmix64: returns (new state, output). Same as samples/train_charlm."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def read_corpus(path):
    """A file, or a directory's fortune files (those with a .dat index beside them), sorted."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path)
                       if os.path.isfile(os.path.join(path, n + ".dat")) and not n.endswith(".dat"))
        return b"".join(open(os.path.join(path, n), "rb").read() for n in names)
    return open(path, "rb").read()


class Embed(nn.Module):
    def __init__(self, vocab, seq_len, d):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d)
        self.pos_emb = nn.Embedding(seq_len, d)

    def forward(self, idx):
        return self.tok_emb(idx) + self.pos_emb.weight[:idx.shape[1]]


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.in_proj_weight = nn.Parameter(torch.empty(3 * d, d))
        self.attn.in_proj_bias = nn.Parameter(torch.empty(3 * d))
        self.attn.out_proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)
        nn.init.xavier_uniform_(self.attn.in_proj_weight)  # nn.MultiheadAttention's
        nn.init.zeros_(self.attn.in_proj_bias)

    def attention(self, x):
        B, T, E = x.shape
        qkv = F.linear(x, self.attn.in_proj_weight, self.attn.in_proj_bias)
        q, k, v = (t.view(B, T, self.heads, E // self.heads).transpose(1, 2) for t in qkv.split(E, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.attn.out_proj(y.transpose(1, 2).reshape(B, T, E))

    def forward(self, x):
        x = x + self.attention(self.ln1(x))
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class Head(nn.Module):
    def __init__(self, d, embed):
        super().__init__()
        self.ln_f = nn.LayerNorm(d)
        self.embed = [embed]  # a list: not a submodule, so its weight is not listed twice

    def forward(self, x):
        return self.ln_f(x) @ self.embed[0].tok_emb.weight.t()  # tied: the output head is the embedding


def CharLM(vocab, seq_len, d, layers, heads):
    """An nn.Sequential named as train_charlm's: 0 = Embed, 1..L = Block, L+1 = Head."""
    embed = Embed(vocab, seq_len, d)
    for e in (embed.tok_emb, embed.pos_emb):
        nn.init.normal_(e.weight, 0.0, 0.02)
    return nn.Sequential(embed, *[Block(d, heads) for _ in range(layers)], Head(d, embed))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", default="/usr/share/games/fortunes")
    p.add_argument("--init", help="safetensors written by train_charlm --save-init (else PyTorch's own init)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-windows", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip", type=int, default=5, help="steps left out of tokens/s (warm-up)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    text = read_corpus(a.corpus)
    vocab = sorted(set(text))
    lut = torch.zeros(256, dtype=torch.long)
    lut[torch.tensor(vocab)] = torch.arange(len(vocab))
    ids = lut[torch.frombuffer(bytearray(text), dtype=torch.uint8).long()]
    n_train = len(ids) * 9 // 10
    train, val = ids[:n_train], ids[n_train:]

    model = CharLM(len(vocab), a.seq_len, a.dim, a.layers, a.heads)
    if a.init:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(a.init), strict=True)

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr)
    total = a.steps

    def lr_at(t):  # optim::CosineWarmupLR
        if t < a.warmup:
            return a.lr * (t + 1) / (a.warmup + 1)
        progress = min(1.0, (t - a.warmup) / (total - a.warmup))
        return 0.5 * a.lr * (1 + math.cos(math.pi * progress))

    state = a.seed
    span = len(train) - a.seq_len - 1
    offs = torch.arange(a.seq_len + 1)
    losses = []
    t0 = None
    for step in range(a.steps):
        if step == a.skip:
            t0 = time.perf_counter()
        starts = []
        for _ in range(a.batch_size):
            state, r = splitmix64(state)
            starts.append(r % span)
        w = train[torch.tensor(starts).unsqueeze(1) + offs]  # (B, T + 1)
        x, y = w[:, :-1], w[:, 1:]
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).reshape(-1, len(vocab)), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - t0
    tokens = (a.steps - a.skip) * a.batch_size * a.seq_len

    model.eval()
    with torch.no_grad():
        n = min(a.val_windows, (len(val) - 1) // a.seq_len)
        starts = torch.arange(n) * a.seq_len
        w = val[starts.unsqueeze(1) + offs]
        total_loss = 0.0
        for i in range(0, n, a.batch_size):
            b = w[i:i + a.batch_size]
            total_loss += F.cross_entropy(model(b[:, :-1]).reshape(-1, len(vocab)), b[:, 1:].reshape(-1),
                                          reduction="sum").item()
        val_loss = total_loss / (n * a.seq_len)
    print(json.dumps({"framework": "pytorch", "threads": a.threads, "steps": a.steps,
                      "tokens_per_s": tokens / seconds, "first_loss": losses[0],
                      "final_train_loss": sum(losses[-10:]) / len(losses[-10:]), "val_loss": val_loss,
                      "losses": losses}))


if __name__ == "__main__":
    main()

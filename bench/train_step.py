"""Training-step throughput in PyTorch: the twin of bench/train_step.cpp.

The same two models (layer shapes as samples/common/models.h,
PyTorch's default initialisation, which weft's Linear and Conv2d copy), the same step
(zero_grad, forward, CrossEntropyLoss(label_smoothing=0.1), backward,
AdamW(lr=2e-3, weight_decay=0.05)), the same batches (batch k is training samples
[k*B, (k+1)*B) of the Fashion-MNIST files, normalised with mean 0.2860 and std 0.3530),
timed the same way, printed as one JSON line on stdout and a summary on stderr.

    /opt/torchbench/bin/python bench/train_step.py --model mlp|cnn [--threads N]
        [--batch-size 128] [--steps S] [--warmup W] [--repeats R] [--batches K]

--rss-epoch runs instead what `train_mlp --epochs 1` runs -- load the training and test
sets as normalised float32 tensors, one shuffled epoch of the MLP in batches of 128 with
AdamW and a warmup+cosine schedule, then the test accuracy in batches of 1000 -- and
prints the peak resident set size (getrusage ru_maxrss), to compare memory footprints.

PyTorch lives only in the benchmark venv (/opt/torchbench); weft never needs it.
"""
import argparse
import gzip
import json
import math
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn

MEAN, STD = 0.2860, 0.3530
DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """An IDX file (gzipped or not) as a numpy array: magic 0x0000_08_<ndim>, big-endian dims."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(data_dir, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{stem}(.gz) not found in {data_dir}")


def load(data_dir, train=True):
    """x (N,1,28,28) float32, normalised as weft's load_fashion_mnist does; y (N) int64."""
    prefix = "train" if train else "t10k"
    images = read_idx(find(data_dir, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(data_dir, f"{prefix}-labels-idx1-ubyte"))
    x = (images.astype(np.float32) / np.float32(255.0) - np.float32(MEAN)) / np.float32(STD)
    x = torch.from_numpy(x).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def make_model(name):
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 512), nn.ReLU(),
            nn.Linear(512, 256), nn.ReLU(),
            nn.Linear(256, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, 1, 1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, 10))


def make_optimizer(model, fused=False):
    # PyTorch's defaults, as a user would write it: on the CPU that is the foreach
    # (multi-tensor) implementation. --fused asks for the fused CPU kernel instead.
    return torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05, fused=True if fused else None)


def bench(a):
    x, y = load(a.data, True)
    B = a.batch_size
    nb = min(a.batches, x.shape[0] // B)
    batches = [(x[k * B:(k + 1) * B].contiguous(), y[k * B:(k + 1) * B].contiguous()) for k in range(nb)]
    del x, y

    model = make_model(a.model)
    opt = make_optimizer(model, a.fused)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    # --precision bf16 / fp16: torch.autocast on the CPU over forward and loss (and a
    # GradScaler for fp16), as weft's Autocast in bench/train_step.cpp.
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a.precision]
    scaler = torch.amp.GradScaler("cpu", enabled=a.precision == "fp16")
    step = [0]
    phase = [0.0, 0.0, 0.0]

    def train_step():
        bx, by = batches[step[0] % nb]
        step[0] += 1
        t0 = time.perf_counter()
        opt.zero_grad()
        t1 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(model(bx), by)
        t2 = time.perf_counter()
        scaler.scale(loss).backward()
        t3 = time.perf_counter()
        scaler.step(opt)
        scaler.update()
        t4 = time.perf_counter()
        phase[0], phase[1], phase[2] = (t2 - t1) * 1e3, (t3 - t2) * 1e3, ((t1 - t0) + (t4 - t3)) * 1e3
        return loss

    loss = None
    for _ in range(a.warmup):
        loss = train_step()
    rates, cpu_ms, fwd, bwd, upd = [], [], [], [], []
    for _ in range(a.repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            loss = train_step()
            fwd.append(phase[0])
            bwd.append(phase[1])
            upd.append(phase[2])
        wall = time.perf_counter() - t0
        rates.append(a.steps * B / wall)
        cpu_ms.append(1e3 * (time.process_time() - c0) / a.steps)
    rate = statistics.median(rates)
    out = {
        "impl": "torch", "version": torch.__version__, "model": a.model, "precision": a.precision,
        "fused_adamw": a.fused,
        "threads": torch.get_num_threads(),
        "batch_size": B, "steps": a.steps, "repeats": a.repeats, "samples_per_s": round(rate, 2),
        "samples_per_s_all": [round(r, 2) for r in rates], "step_ms": 1e3 * B / rate,
        "cpu_ms_per_step": statistics.median(cpu_ms), "forward_ms": statistics.median(fwd),
        "backward_ms": statistics.median(bwd), "optimizer_ms": statistics.median(upd),
        "loss": float(loss.item()),
    }
    print(json.dumps(out))
    print(f"torch {torch.__version__} {a.model}, {out['threads']} thread(s), batch {B}: {rate:.0f} samples/s "
          f"({out['step_ms']:.2f} ms/step; runs: {out['samples_per_s_all']})\n"
          f"  per step (median): forward {out['forward_ms']:.3f} ms, backward {out['backward_ms']:.3f} ms, "
          f"optimizer {out['optimizer_ms']:.3f} ms; process CPU {out['cpu_ms_per_step']:.3f} ms; "
          f"last loss {out['loss']:.4f}", file=sys.stderr)


def rss_epoch(a):
    """What `train_mlp --epochs 1` does, then the peak RSS."""
    torch.manual_seed(a.seed)
    x, y = load(a.data, True)
    tx, ty = load(a.data, False)
    model = make_model("mlp")
    opt = make_optimizer(model)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    # --precision bf16 / fp16: torch.autocast on the CPU over forward and loss (and a
    # GradScaler for fp16), as weft's Autocast in bench/train_step.cpp.
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a.precision]
    scaler = torch.amp.GradScaler("cpu", enabled=a.precision == "fp16")
    B = 128
    n = x.shape[0]
    steps = math.ceil(n / B)
    warmup = int(0.05 * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup))))
    order = torch.randperm(n)
    t0 = time.perf_counter()
    for k in range(steps):
        idx = order[k * B:(k + 1) * B]
        bx, by = x.index_select(0, idx), y.index_select(0, idx)
        opt.zero_grad()
        loss = loss_fn(model(bx), by)
        loss.backward()
        opt.step()
        sched.step()
    train_s = time.perf_counter() - t0
    model.eval()
    correct = 0
    with torch.no_grad():
        for k in range(0, tx.shape[0], 1000):
            correct += (model(tx[k:k + 1000]).argmax(1) == ty[k:k + 1000]).sum().item()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = {"impl": "torch", "version": torch.__version__, "mode": "rss_epoch", "threads": torch.get_num_threads(),
           "test_accuracy": correct / tx.shape[0], "train_samples_per_s": round(n / train_s, 1),
           "max_rss_kib": peak_kib}
    print(json.dumps(out))
    print(f"torch {torch.__version__} MLP, 1 epoch: test_accuracy={out['test_accuracy']:.4f} "
          f"peak RSS {peak_kib / 1024:.1f} MiB", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=0, help="timed steps per run (0: 200 mlp, 30 cnn)")
    p.add_argument("--warmup", type=int, default=-1, help="untimed steps first (-1: 20 mlp, 5 cnn)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batches", type=int, default=16, help="distinct batches to cycle over")
    p.add_argument("--data", default=DATA)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--fused", action="store_true", help="AdamW(fused=True) instead of the default")
    p.add_argument("--rss-epoch", action="store_true", help="one train_mlp-like epoch, then print peak RSS")
    a = p.parse_args()
    if a.steps <= 0:
        a.steps = 200 if a.model == "mlp" else 30
    if a.warmup < 0:
        a.warmup = 20 if a.model == "mlp" else 5
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.rss_epoch:
        rss_epoch(a)
    else:
        bench(a)


if __name__ == "__main__":
    main()

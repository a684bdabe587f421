#!/usr/bin/env python3
"""train_charlm next to its PyTorch twin (bench/charlm.py): tokens/s and loss.

Both start from the same weights (train_charlm --save-init writes them, charlm.py loads
them), see the same batches (one splitmix64 stream) and take the same AdamW steps, so
their losses should follow each other step by step and their tokens/s are of the same
work. For each thread count, ROUNDS rounds of weft then PyTorch, one after the other, so
a burst of load on a shared machine hits both alike; the medians are compared.

    python3 bench/run_charlm.py                       # 500 steps, 2 rounds, 1 and 2 threads
    STEPS=600 ROUNDS=3 THREADS="1 2" python3 bench/run_charlm.py
    TORCH_PYTHON=/path/to/python BUILD_DIR=build OUT=bench/results/charlm.md ...

Prints a Markdown report (and writes it to OUT when set): the CPU, a tokens/s table with
the ratio weft / PyTorch (> 1: weft is faster), the validation losses and their relative
difference, and the training loss of both every LOG_EVERY steps. PyTorch is needed only
here, never to build or test weft.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD_DIR", "build")
STEPS = int(os.environ.get("STEPS", "500"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
THREADS = [int(t) for t in os.environ.get("THREADS", "1 2").split()]
LOG_EVERY = int(os.environ.get("LOG_EVERY", "50"))
TORCH = os.environ.get("TORCH_PYTHON", "/opt/torchbench/bin/python")
# The model and batch: train_charlm's defaults, spelled out so both programs get them.
SHAPE = ["--batch-size", "16", "--seq-len", "128", "--dim", "128", "--layers", "4", "--heads", "4",
         "--lr", "2e-3", "--warmup", "30", "--weight-decay", "0.1", "--clip", "1.0", "--seed", "0"]


def cpu_name():
    info = open("/proc/cpuinfo").read()
    name = re.search(r"model name\s*:\s*(.*)", info).group(1).strip()
    fam = re.search(r"cpu family\s*:\s*(\d+)", info).group(1)
    mod = re.search(r"^model\s*:\s*(\d+)", info, re.M).group(1)
    flags = re.search(r"flags\s*:\s*(.*)", info).group(1).split()
    vec = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
    return f"{name}, family {fam} model {mod}, {os.cpu_count()} cores, {vec}"


def run_weft(threads, init=None):
    cmd = [os.path.join(ROOT, BUILD, "samples", "train_charlm"), *SHAPE, "--steps", str(STEPS),
           "--threads", str(threads), "--sample-length", "0", "--log-every", str(LOG_EVERY)]
    if init:
        cmd += ["--save-init", init]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    last = re.search(r"val_loss=([\d.]+) train_tokens_per_s=([\d.]+)", out)
    losses = {int(s): float(l) for s, l in re.findall(r"step=(\d+) loss=([\d.]+)", out)}
    return {"tokens_per_s": float(last.group(2)), "val_loss": float(last.group(1)), "losses": losses}


def run_torch(threads, init):
    cmd = [TORCH, os.path.join(ROOT, "bench", "charlm.py"), *SHAPE, "--steps", str(STEPS), "--threads",
           str(threads), "--init", init]
    d = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    d["losses"] = {i: l for i, l in enumerate(d["losses"])}
    return d


def main():
    have_torch = subprocess.run([TORCH, "-c", "import torch, safetensors"], capture_output=True).returncode == 0
    load = lambda: open("/proc/loadavg").read().split()[0]
    lines = [f"# train_charlm vs PyTorch {'' if have_torch else '(PyTorch not found: weft alone)'}", "",
             f"CPU: {cpu_name()}. Load average before: {load()}.",
             f"Model: 4 layers, d=128, 4 heads, context 128, batch 16 (2048 tokens/step), {STEPS} steps, "
             "AdamW, clip 1.0, warm-up 30 then cosine. Same initial weights, same batches.", ""]
    init = os.path.join(tempfile.mkdtemp(), "init.safetensors")
    results = {}
    for t in THREADS:
        w, p = [], []
        for r in range(ROUNDS):
            w.append(run_weft(t, init if not os.path.exists(init) else None))
            if have_torch:
                p.append(run_torch(t, init))
            print(f"threads {t} round {r + 1}: weft {w[-1]['tokens_per_s']:.0f} tokens/s"
                  + (f", torch {p[-1]['tokens_per_s']:.0f}" if p else ""), file=sys.stderr)
        results[t] = (w, p)
    lines += ["| threads | weft tokens/s (median) | PyTorch tokens/s (median) | weft / PyTorch | runs |",
              "| --- | --- | --- | --- | --- |"]
    for t, (w, p) in results.items():
        wm = statistics.median(x["tokens_per_s"] for x in w)
        pm = statistics.median(x["tokens_per_s"] for x in p) if p else float("nan")
        runs = ", ".join(f"{a['tokens_per_s']:.0f}/{b['tokens_per_s']:.0f}" for a, b in zip(w, p)) if p else ""
        lines.append(f"| {t} | {wm:.0f} | {pm:.0f} | {wm / pm:.3f}x | {runs} |")
    w0, p0 = results[THREADS[0]][0][0], (results[THREADS[0]][1] or [None])[0]
    lines += ["", f"Load average after: {load()}.", ""]
    if p0:
        rel = (w0["val_loss"] - p0["val_loss"]) / p0["val_loss"]
        lines += [f"Validation loss after {STEPS} steps (64 windows of 128): weft {w0['val_loss']:.4f}, "
                  f"PyTorch {p0['val_loss']:.4f}, relative difference {100 * rel:+.2f}% (target: within 2%).", "",
                  "| step | weft loss | PyTorch loss |", "| --- | --- | --- |"]
        for s in sorted(w0["losses"]):
            lines.append(f"| {s} | {w0['losses'][s]:.4f} | {p0['losses'][s]:.4f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if os.environ.get("OUT"):
        open(os.environ["OUT"], "w").write(report)


if __name__ == "__main__":
    main()

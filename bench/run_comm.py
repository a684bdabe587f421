#!/usr/bin/env python3
"""Cheaper communication, measured: DDP's comm hooks and the asynchronous parameter server.

Part 1, comm hooks: train_ddp --model cnn at 2 rank threads for EPOCHS epochs with each
hook in HOOKS; per hook the test accuracy, the bytes rank 0 sent per step (what the hook
counts under the ring cost model: parallel/comm_hook.h), the ratio to float32's and the
samples/s. The uncompressed run ("none") is the reference for accuracy.

Part 2, parameter server: train_ddp --model mlp --algorithm ps with WORKERS workers at
each staleness bound in STALENESS (-1: fully asynchronous), next to synchronous DDP with
as many ranks: test accuracy, samples/s and the staleness the server recorded.

    python3 bench/run_comm.py                      # CNN 5 epochs, MLP 10 epochs
    EPOCHS=1 PS_EPOCHS=2 LIMIT=8192 python3 bench/run_comm.py     # a quick look
    BUILD_DIR=build OUT=bench/results/comm.md ...

Threads share this machine's cores (train_ddp gives each rank cores / ranks intra-op
threads), so samples/s here is about the cost of the hook's own work, not about a
network it saves: on one machine the "link" is memory.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD_DIR", "build")
EPOCHS = os.environ.get("EPOCHS", "5")
PS_EPOCHS = os.environ.get("PS_EPOCHS", "10")
LIMIT = os.environ.get("LIMIT", "")
HOOKS = os.environ.get("HOOKS", "none bf16 fp16 powersgd:4 topk:0.01").split()
WORKERS = [int(w) for w in os.environ.get("WORKERS", "2 4").split()]
STALENESS = os.environ.get("STALENESS", "0 2 -1").split()


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def run(args):
    cmd = [os.path.join(ROOT, BUILD, "samples", "train_ddp")] + args
    if LIMIT:
        cmd += ["--limit", LIMIT]
    print("$", " ".join(cmd[1:]), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"train_ddp failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    last = [l for l in out.stdout.splitlines() if l.startswith("test_accuracy=")][-1]
    return dict(kv.split("=", 1) for kv in last.split())


def main():
    lines = [f"# Cheaper communication: comm hooks and the asynchronous parameter server", "",
             f"Machine: {cpu_name()}, {os.cpu_count()} cores. `python3 bench/run_comm.py`"
             f" (EPOCHS={EPOCHS}, PS_EPOCHS={PS_EPOCHS}{', LIMIT=' + LIMIT if LIMIT else ''}).", "",
             f"## DDP comm hooks: CNN, 2 rank threads, {EPOCHS} epochs", "",
             "| hook | test accuracy | vs none (points) | bytes sent per step | float32 / hook | samples/s |",
             "| --- | --- | --- | --- | --- | --- |"]
    base = None
    for hook in HOOKS:
        r = run(["--model", "cnn", "--replicas", "2", "--epochs", EPOCHS, "--comm-hook", hook])
        acc = float(r["test_accuracy"])
        base = acc if base is None else base
        lines.append(f"| {hook} | {acc:.4f} | {100 * (acc - base):+.2f} | {float(r['comm_bytes_per_step']):,.0f} |"
                     f" {float(r['compression']):.2f}x | {float(r['train_samples_per_s']):.0f} |")
    lines += ["", f"## Parameter server: MLP, {PS_EPOCHS} epochs", "",
              "| workers | training | test accuracy | vs DDP (points) | samples/s | staleness mean / max |",
              "| --- | --- | --- | --- | --- | --- |"]
    for w in WORKERS:
        ddp = run(["--model", "mlp", "--replicas", str(w), "--epochs", PS_EPOCHS])
        ref = float(ddp["test_accuracy"])
        lines.append(f"| {w} | DDP (all-reduce) | {ref:.4f} | -- | {float(ddp['train_samples_per_s']):.0f} | -- |")
        for s in STALENESS:
            r = run(["--model", "mlp", "--replicas", str(w), "--epochs", PS_EPOCHS, "--algorithm", "ps",
                     "--staleness", s])
            acc = float(r["test_accuracy"])
            name = "ps, asynchronous" if s == "-1" else f"ps, staleness {s}"
            lines.append(f"| {w} | {name} | {acc:.4f} | {100 * (acc - ref):+.2f} | {float(r['train_samples_per_s']):.0f} |"
                         f" {float(r['staleness_mean']):.2f} / {r['staleness_max']} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if os.environ.get("OUT"):
        open(os.environ["OUT"], "w").write(report)


if __name__ == "__main__":
    main()

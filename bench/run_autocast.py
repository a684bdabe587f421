#!/usr/bin/env python3
"""Mixed precision on the CPU, measured: bf16 autocast next to float32, in weft and in PyTorch.

Part 1, throughput: bench/train_step (weft) and bench/train_step.py (its PyTorch twin,
the same model, batches and step) for MODELS at THREADS threads, at each precision in
PRECISIONS, alternating weft and PyTorch for ROUNDS rounds so that a burst of load on a
shared machine hits both alike. Per row the median samples/s over all timed runs, and
the ratios that matter: 16-bit over float32 in each framework, and weft over PyTorch.

Part 2, accuracy (unless SKIP_ACCURACY=1): samples/train_cnn --epochs EPOCHS at each
precision, the test accuracy and the difference to float32.

    python3 bench/run_autocast.py                 # cnn and mlp, 2 threads, 3 rounds, 5 epochs
    ROUNDS=1 SKIP_ACCURACY=1 python3 bench/run_autocast.py     # a quick look
    PRECISIONS="fp32 bf16 fp16" THREADS="1 2" OUT=bench/results/autocast.md ...

The CPU's name and its 16-bit vector extensions head the report: whether a CPU has
AVX-512 BF16 or AMX decides what 16 bits can gain on it (tensor/half_backend.h).
PyTorch is needed only here (TORCH_PYTHON, default /opt/torchbench/bin/python).
"""
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD_DIR", "build")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
REPEATS = os.environ.get("REPEATS", "3")
MODELS = os.environ.get("MODELS", "cnn mlp").split()
THREADS = os.environ.get("THREADS", "2").split()
PRECISIONS = os.environ.get("PRECISIONS", "fp32 bf16").split()
EPOCHS = os.environ.get("EPOCHS", "5")
TORCH = os.environ.get("TORCH_PYTHON", "/opt/torchbench/bin/python")
OUT = os.environ.get("OUT", os.path.join(ROOT, "bench", "results", "autocast.md"))


def cpu_line():
    name, flags = "unknown CPU", []
    family = model = "?"
    for line in open("/proc/cpuinfo"):
        key = line.split(":", 1)[0].strip()
        value = line.split(":", 1)[1].strip() if ":" in line else ""
        if key == "model name":
            name = value
        elif key == "cpu family":
            family = value
        elif key == "model":
            model = value
        elif key == "flags":
            flags = value.split()
            break
    ext = [f for f in ("avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile") if f in flags]
    missing = [f for f in ("avx512_bf16", "amx_bf16") if f not in flags]
    note = f"; no {' or '.join(missing)}" if missing else ""
    return f"{name} (family {family} model {model}), {os.cpu_count()} cores; {', '.join(ext) or 'no AVX-512'}{note}"


def step_run(impl, model, threads, precision):
    if impl == "weft":
        cmd = [os.path.join(ROOT, BUILD, "bench", "train_step")]
    else:
        cmd = [TORCH, os.path.join(ROOT, "bench", "train_step.py")]
    cmd += ["--model", model, "--threads", threads, "--precision", precision, "--repeats", REPEATS]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"{impl} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])


def accuracy(precision):
    cmd = [os.path.join(ROOT, BUILD, "samples", "train_cnn"), "--epochs", EPOCHS, "--precision", precision]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"train_cnn failed ({out.returncode}):\n{out.stdout[-2000:]}")
    last = [l for l in out.stdout.splitlines() if l.startswith("test_accuracy=")][-1]
    return dict(kv.split("=", 1) for kv in last.split())


def main():
    subprocess.run(["ninja", "-C", os.path.join(ROOT, BUILD), "bench/train_step", "samples/train_cnn"], check=True,
                   stdout=subprocess.DEVNULL)
    have_torch = os.path.exists(TORCH)
    rates = {}  # (impl, model, threads, precision) -> [samples/s of every timed run]
    for _ in range(ROUNDS):
        for model in MODELS:
            for threads in THREADS:
                for precision in PRECISIONS:
                    for impl in (["weft", "torch"] if have_torch else ["weft"]):
                        r = step_run(impl, model, threads, precision)
                        rates.setdefault((impl, model, threads, precision), []).extend(r["samples_per_s_all"])
    med = {k: statistics.median(v) for k, v in rates.items()}
    lines = ["# Mixed precision on the CPU: bf16 autocast next to float32", "",
             f"Machine: {cpu_line()}. Load average at the end: {os.getloadavg()[0]:.2f}.",
             f"`python3 bench/run_autocast.py` (ROUNDS={ROUNDS}, REPEATS={REPEATS}, EPOCHS={EPOCHS}).", "",
             "## Training-step throughput (samples/s, median over every timed run)", "",
             "| model | threads | precision | weft | PyTorch | weft / PyTorch | weft vs its fp32 | PyTorch vs its fp32 |",
             "|---|---|---|---|---|---|---|---|"]
    for model in MODELS:
        for threads in THREADS:
            for precision in PRECISIONS:
                w = med[("weft", model, threads, precision)]
                w32 = med[("weft", model, threads, "fp32")] if "fp32" in PRECISIONS else None
                t = med.get(("torch", model, threads, precision))
                t32 = med.get(("torch", model, threads, "fp32"))
                fmt = lambda x: f"{x:.0f}" if x else "-"
                ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"
                lines.append(f"| {model} | {threads} | {precision} | {fmt(w)} | {fmt(t)} | {ratio(w, t)} | "
                             f"{ratio(w, w32)} | {ratio(t, t32)} |")
    if os.environ.get("SKIP_ACCURACY") != "1":
        lines += ["", f"## CNN test accuracy after {EPOCHS} epochs (samples/train_cnn --precision P)", "",
                  "| precision | test accuracy | vs fp32 (points) | samples/s (train_cnn) |", "|---|---|---|---|"]
        acc = {p: accuracy(p) for p in PRECISIONS}
        base = float(acc["fp32"]["test_accuracy"]) if "fp32" in acc else None
        for p, r in acc.items():
            a = float(r["test_accuracy"])
            diff = f"{100 * (a - base):+.2f}" if base is not None else "-"
            lines.append(f"| {p} | {100 * a:.2f}% | {diff} | {float(r['train_samples_per_s']):.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(OUT, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()

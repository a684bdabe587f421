"""Per-op overhead in PyTorch: the twin of bench/op_overhead.cpp.

The same chain -- y = y * 1.0001; y = y + c; y = y.relu(), cycling, on a 16-element
float32 leaf, then loss = y.sum() -- measured the same way (ns per op, one warm-up, every
sample printed as one JSON line) so bench/run_op_overhead.sh can put them side by side.

PyTorch lives only in the benchmark venv; weft never needs it:
    /opt/torchbench/bin/python bench/op_overhead.py [--ops N] [--numel N] [--reps N]
"""
import argparse
import json
import statistics
import sys
import time

import torch


def chain(x, c, ops):
    y = x
    for i in range(ops):
        k = i % 3
        if k == 0:
            y = y * 1.0001
        elif k == 1:
            y = y + c
        else:
            y = y.relu()
    return y


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ops", type=int, default=10000)
    p.add_argument("--numel", type=int, default=16)
    p.add_argument("--reps", type=int, default=7)
    a = p.parse_args()
    torch.set_num_threads(1)

    n = a.numel
    xs = [0.5 + i / max(1, n - 1) for i in range(n)]
    x = torch.tensor(xs, dtype=torch.float32, requires_grad=True)
    c = torch.full((n,), 1e-4, dtype=torch.float32)

    # Wall time and process CPU time (steadier on a busy machine), as in the C++ twin.
    def now():
        return time.perf_counter_ns(), time.process_time_ns()

    samples = {clock: {"forward_grad": [], "backward": [], "forward_nograd": []} for clock in ("wall", "cpu")}

    loss_value = grad0 = 0.0
    for r in range(-1, a.reps):  # r == -1 is the warm-up
        x.grad = None
        t0 = now()
        y = chain(x, c, a.ops)
        t_fwd = (t0, now())
        loss = y.sum()
        del y  # only loss holds the graph
        loss_value = loss.item()
        t0 = now()
        loss.backward()
        # Drop the graph's nodes inside the timing: weft's backward frees its tape entries
        # as it walks them, so both numbers include tearing the graph down.
        del loss
        t_bwd = (t0, now())
        grad0 = x.grad[0].item()

        with torch.no_grad():
            t0 = now()
            z = chain(x, c, a.ops)
            t_nograd = (t0, now())
        del z
        if r >= 0:
            for phase, (t0, t1) in (("forward_grad", t_fwd), ("backward", t_bwd), ("forward_nograd", t_nograd)):
                samples["wall"][phase].append(round((t1[0] - t0[0]) / a.ops, 1))
                samples["cpu"][phase].append(round((t1[1] - t0[1]) / a.ops, 1))

    med = {phase: statistics.median(v) for phase, v in samples["cpu"].items()}
    print(f"torch {torch.__version__}: forward_grad {med['forward_grad']:.0f} ns/op, backward {med['backward']:.0f} "
          f"ns/op, forward_nograd {med['forward_nograd']:.0f} ns/op (CPU time, medians of {a.reps})", file=sys.stderr)
    print(json.dumps({"impl": "torch", "version": torch.__version__, "ops": a.ops, "numel": n,
                      "loss": loss_value, "grad0": grad0, **samples}))

if __name__ == "__main__":
    main()

"""GPU training-step throughput in PyTorch: the twin of bench/gpu_train_step.cpp.

Same models (bench/train_step.py's), same step (zero_grad, forward,
CrossEntropyLoss(label_smoothing=0.1), backward, AdamW(lr=2e-3, weight_decay=0.05)),
same batches already on the GPU, timed the same way. --graph captures the step with
torch.cuda.graphs (AdamW(capturable=True), as PyTorch requires) and replays it after
copying each batch into the static input.

    python bench/gpu_train_step.py --model mlp|cnn [--graph] [--batch-size 128]
"""
import argparse
import json
import statistics
import time

import torch
from torch import nn

from train_step import load, make_model  # the CPU benchmark's data and models


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--graph", action="store_true")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batches", type=int, default=16)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # weft's default: exact float32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True  # like weft: time the algorithms per shape
    dev = torch.device("cuda")
    torch.manual_seed(0)
    x_all, y_all = load(a.data, train=True)
    B = a.batch_size
    xs = [x_all[k * B:(k + 1) * B].to(dev) for k in range(a.batches)]
    ys = [y_all[k * B:(k + 1) * B].to(dev) for k in range(a.batches)]
    model = make_model(a.model).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05, capturable=a.graph)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)

    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a.precision]
    scaler = torch.amp.GradScaler("cuda", enabled=a.precision == "fp16")

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    sx, sy = xs[0].clone(), ys[0].clone()
    graph, static_loss = None, None
    if a.graph:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                step(sx, sy)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            static_loss = step(sx, sy)
    k = 0

    def one():
        nonlocal k
        x, y = xs[k % a.batches], ys[k % a.batches]
        k += 1
        if graph is None:
            return step(x, y)
        sx.copy_(x)
        sy.copy_(y)
        graph.replay()
        return static_loss

    loss = None
    for _ in range(a.warmup):
        loss = one()
    torch.cuda.synchronize()
    rates = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            loss = one()
        torch.cuda.synchronize()
        rates.append(a.steps * B / (time.perf_counter() - t0))
    rate = statistics.median(rates)
    print(json.dumps({"impl": "torch", "version": torch.__version__, "model": a.model, "precision": a.precision,
                      "mode": "graph" if a.graph else "eager", "batch_size": B,
                      "samples_per_s": round(rate, 1), "step_us": round(1e6 * B / rate, 2),
                      "loss": round(float(loss), 5)}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the PyTorch golden fixtures that tests/golden/test_pytorch_golden.cpp reads.

Run once, by hand, with a Python that has PyTorch (the fixtures are committed; building
and running weft's tests never needs PyTorch):

    /opt/torchbench/bin/python tests/golden/make_golden.py

Every case is a corner where weft once differed from PyTorch, and its neighbours: NaN,
-NaN, +-inf, +-0.0 and ties, through relu and max pooling (plain and fused), maximum and
minimum, max(dim) / min(dim) / max() / amax / amin, pow, and a few float32 Adam and AdamW
steps. Each fixture holds, per case, the inputs, the upstream gradient fed to backward
and PyTorch's outputs and input gradients, all computed on the CPU. The safetensors
files are written by hand below (a JSON header plus raw little-endian bytes) so the
script needs nothing but torch.
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
NAN, INF = float("nan"), float("inf")
DTYPES = {"f32": torch.float32, "f64": torch.float64}
ST_DTYPE = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}


def save(name, tensors):
    """tensors: {name: tensor}; written in insertion order, contiguous, on the CPU."""
    header, blobs, offset = {}, [], 0
    for key, t in tensors.items():
        data = t.detach().contiguous().cpu().numpy().tobytes()
        header[key] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"generator": "tests/golden/make_golden.py", "torch": torch.__version__}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    print(f"{name}: {len(tensors)} tensors, {offset} data bytes")


def leaf(values, dtype):
    return torch.tensor(values, dtype=dtype).requires_grad_(True)


def upstream(shape, dtype):
    """A distinct gradient per output element (1, 2, 3, ...), so routing shows."""
    n = math.prod(shape)
    return torch.arange(1, n + 1, dtype=dtype).reshape(shape)


# ---- relu and max pooling --------------------------------------------------------------
RELU_X = [NAN, -NAN, 1.0, -1.0, 0.0, -0.0, INF, -INF, 1e-40, -1e-40, 3.5, -2.5]

# (name, kwargs of F.max_pool2d): the 2x2 fast path, and two general windows.
POOLS = [
    ("k2", dict(kernel_size=2)),
    ("k3s2p1", dict(kernel_size=3, stride=2, padding=1)),
    ("k23s12d21", dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1))),
]


def pool_input(dtype):
    """(2,2,6,36): random values with the awkward ones sprinkled in, and hand-made windows
    at the top-left of plane 0 (rows 0-1, columns 0-11)."""
    g = torch.Generator().manual_seed(17)
    x = torch.randn(2, 2, 6, 36, generator=g, dtype=torch.float64)
    flat = x.view(-1)
    for i in range(flat.numel()):
        if i % 11 == 3:
            flat[i] = 0.0
        if i % 19 == 2:
            flat[i] = -0.0
        if i % 17 == 5:
            flat[i] = NAN
        if i % 23 == 9:
            flat[i] = INF if i % 2 else -INF
        if i % 13 == 7 and i > 0:
            flat[i] = flat[i - 1]  # a tie with the left neighbour
        if (i // 36) % 4 == 1:
            flat[i] = -abs(flat[i])  # some all-negative rows
    windows = [  # each [[a, b], [c, d]] is one 2x2 window
        [[NAN, 0.5], [0.2, -1.0]],  # the window: NaN, not 0.5
        [[0.5, NAN], [NAN, -1.0]],  # two NaNs: PyTorch's gradient goes to the last
        [[-1.0, -2.0], [-3.0, -4.0]],  # all negative: relu gives 0, no gradient
        [[-0.0, 0.0], [-1.0, 0.0]],  # signed zeros tied
        [[INF, INF], [1.0, NAN]],  # inf ties, then a NaN
        [[-INF, -INF], [-INF, -INF]],  # all -inf
    ]
    for k, w in enumerate(windows):
        x[0, 0, 0:2, 2 * k : 2 * k + 2] = torch.tensor(w, dtype=torch.float64)
    return x.to(dtype)


def relu_pool_cases():
    out = {}
    for tag, dt in DTYPES.items():
        x = leaf(RELU_X, dt)
        y = torch.relu(x)
        y.backward(upstream(y.shape, dt))
        out.update({f"relu.{tag}.x": x, f"relu.{tag}.y": y, f"relu.{tag}.gx": x.grad})
        xp = pool_input(dt)
        out[f"pool.{tag}.x"] = xp
        for name, kw in POOLS:
            gen = torch.Generator().manual_seed(5)
            for op, fn in (("max", lambda t: t), ("relu_max", torch.relu)):
                x = xp.clone().requires_grad_(True)
                y, idx = F.max_pool2d(fn(x), return_indices=True, **kw)
                if op == "max":
                    g = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(dt)
                    out[f"pool.{tag}.{name}.g"] = g
                    out[f"pool.{tag}.{name}.idx"] = idx
                y.backward(out[f"pool.{tag}.{name}.g"])
                out[f"pool.{tag}.{name}.{op}.y"] = y
                out[f"pool.{tag}.{name}.{op}.gx"] = x.grad
    save("relu_pool.safetensors", out)


# ---- maximum / minimum, max(dim) / min(dim), max(), amax / amin ---------------------------
PAIR_A = [1.0, 2.0, 3.0, NAN, INF, -INF, 0.0, -0.0, NAN, 1.0, -1.0, 5.0, 0.0, -0.0]
PAIR_B = [1.0, 1.0, 3.0, 1.0, INF, -INF, -0.0, 0.0, NAN, NAN, -1.0, INF, 0.0, -0.0]
# rows: a plain tie, NaNs (two of them), signed zeros, inf ties, -inf only, a clear winner
ROWS = [
    [1.0, 3.0, 3.0, 2.0, 3.0],
    [NAN, 1.0, NAN, 2.0, 0.0],
    [2.0, NAN, 5.0, NAN, 5.0],
    [-0.0, 0.0, -1.0, 0.0, -0.0],
    [INF, INF, 1.0, 2.0, -INF],
    [-INF, -INF, -INF, -INF, -INF],
    [4.0, -2.0, 7.0, 1.0, 6.0],
]


def extremum_cases():
    out = {}
    for tag, dt in DTYPES.items():
        for name, fn in (("maximum", torch.maximum), ("minimum", torch.minimum)):
            a, b = leaf(PAIR_A, dt), leaf(PAIR_B, dt)
            y = fn(a, b)
            y.backward(upstream(y.shape, dt))
            out.update({f"{name}.{tag}.a": a, f"{name}.{tag}.b": b, f"{name}.{tag}.y": y,
                        f"{name}.{tag}.ga": a.grad, f"{name}.{tag}.gb": b.grad})
            # Broadcast (3,1) against (1,4) with ties: the gradients are summed back.
            a = leaf([[1.0], [2.0], [NAN]], dt)
            b = leaf([[1.0, 2.0, 0.0, 3.0]], dt)
            y = fn(a, b)
            y.backward(upstream(y.shape, dt))
            out.update({f"{name}_bcast.{tag}.a": a, f"{name}_bcast.{tag}.b": b, f"{name}_bcast.{tag}.y": y,
                        f"{name}_bcast.{tag}.ga": a.grad, f"{name}_bcast.{tag}.gb": b.grad})
        rows = torch.tensor(ROWS, dtype=dt)
        out[f"rows.{tag}.x"] = rows
        for dim in (0, 1):
            for name in ("max", "min"):
                x = rows.clone().requires_grad_(True)
                v, i = getattr(x, name)(dim)
                v.backward(upstream(v.shape, dt))
                out.update({f"{name}{dim}.{tag}.y": v, f"{name}{dim}.{tag}.idx": i, f"{name}{dim}.{tag}.gx": x.grad})
            for name in ("amax", "amin"):
                x = rows.clone().requires_grad_(True)
                v = getattr(x, name)(dim)
                v.backward(upstream(v.shape, dt))
                out.update({f"{name}{dim}.{tag}.y": v, f"{name}{dim}.{tag}.gx": x.grad})
        # Whole-tensor max() / min() / amax() / amin(), with and without a NaN.
        clean = torch.tensor([[1.0, 3.0, 3.0], [-2.0, 3.0, -2.0]], dtype=dt)
        dirty = torch.tensor([[1.0, NAN, 3.0], [-2.0, NAN, -2.0]], dtype=dt)
        for which, base in (("clean", clean), ("nan", dirty)):
            out[f"all_{which}.{tag}.x"] = base
            for name in ("max", "min", "amax", "amin"):
                x = base.clone().requires_grad_(True)
                v = getattr(x, name)()
                v.backward(torch.tensor(2.0, dtype=dt))
                out.update({f"all_{which}_{name}.{tag}.y": v, f"all_{which}_{name}.{tag}.gx": x.grad})
    save("extremum.safetensors", out)


# ---- pow -----------------------------------------------------------------------------------
# Bases and exponents with exact results, so only the special-value rules are compared
# bit for bit: base 0 and -0 under every kind of exponent, exponent 0, NaN, inf.
POW_A = [0.0, 0.0, 0.0, 0.0, -0.0, 2.0, -2.0, 0.0, 0.0, NAN, 1.0, INF, 0.0, -1.0, 0.0, 4.0, NAN, 0.0, 2.0]
POW_B = [2.0, 0.0, -1.0, 0.5, 2.0, 3.0, 2.0, INF, -INF, 0.0, NAN, 0.0, 1.0, 0.5, NAN, 0.5, 1.0, -2.0, -1.0]
POW_SCALAR_A = [0.0, -0.0, 2.0, -2.0, 1.0, INF, NAN, 0.25]
POW_SCALAR_E = [0.0, 1.0, 2.0, 3.0, 0.5, -1.0, -2.0]


def pow_cases():
    out = {}
    for tag, dt in DTYPES.items():
        a, b = leaf(POW_A, dt), leaf(POW_B, dt)
        y = torch.pow(a, b)
        y.backward(upstream(y.shape, dt))
        out.update({f"pow.{tag}.a": a, f"pow.{tag}.b": b, f"pow.{tag}.y": y, f"pow.{tag}.ga": a.grad,
                    f"pow.{tag}.gb": b.grad})
        out[f"pow_scalar.{tag}.a"] = torch.tensor(POW_SCALAR_A, dtype=dt)
        out[f"pow_scalar.{tag}.e"] = torch.tensor(POW_SCALAR_E, dtype=dt)
        for k, e in enumerate(POW_SCALAR_E):
            a = leaf(POW_SCALAR_A, dt)
            y = torch.pow(a, e)
            y.backward(upstream(y.shape, dt))
            out.update({f"pow_scalar.{tag}.{k}.y": y, f"pow_scalar.{tag}.{k}.ga": a.grad})
    save("pow.safetensors", out)


# ---- Adam / AdamW, float32 -------------------------------------------------------------------
# (name, class, options). foreach=False: the per-tensor loop of torch/optim/adam.py, the
# arithmetic weft's fused step follows.
OPTIMS = [
    ("adamw", torch.optim.AdamW, dict(lr=1e-3, weight_decay=1e-2)),
    ("adamw_hot", torch.optim.AdamW, dict(lr=3e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
    ("adam", torch.optim.Adam, dict(lr=1e-2)),
    ("adam_l2", torch.optim.Adam, dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.05)),
]
STEPS, N = 6, 259  # 8 vectors of 32 floats and a tail: PyTorch's vector loops and scalar tails both run


def adam_cases():
    out = {}
    gen = torch.Generator().manual_seed(3)
    w0 = torch.randn(N, generator=gen)
    w0[:4] = torch.tensor([0.0, -0.0, 1e-30, 1e4])
    grads = []
    for s in range(STEPS):
        g = torch.randn(N, generator=gen) * (10.0 ** (s % 3 - 1))
        g[:6] = torch.tensor([0.0, -0.0, 1e-20, -1e-20, 1e10, -3.0])  # zeros, tiny and huge gradients
        grads.append(g)
        out[f"adam.g{s + 1}"] = g
    out["adam.w0"] = w0
    for name, cls, opts in OPTIMS:
        p = torch.nn.Parameter(w0.clone())
        opt = cls([p], foreach=False, **opts)
        for s, g in enumerate(grads):
            p.grad = g.clone()
            opt.step()
            st = opt.state[p]
            out[f"{name}.w{s + 1}"] = p.detach().clone()
            out[f"{name}.m{s + 1}"] = st["exp_avg"].clone()
            out[f"{name}.v{s + 1}"] = st["exp_avg_sq"].clone()
    save("adam.safetensors", out)


if __name__ == "__main__":
    torch.set_num_threads(1)
    relu_pool_cases()
    extremum_cases()
    pow_cases()
    adam_cases()

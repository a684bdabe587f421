"""PyTorch twin of bench/gpu_kernels.cpp: the same ops on the same shapes, timed the same way."""
import torch
import torch.nn.functional as F


def time_us(f, iters=200):
    for _ in range(10):
        f()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(iters):
        f()
    e.record()
    e.synchronize()
    return 1000.0 * s.elapsed_time(e) / iters


d = "cuda"
a, b = torch.randn(1 << 24, device=d), torch.randn(1 << 24, device=d)
x, bias = torch.randn(65536, 512, device=d), torch.randn(512, device=d)
logits, big = torch.randn(65536, 10, device=d), torch.randn(4096, 4096, device=d)
conv = torch.randn(128, 64, 28, 28, device=d)
target = (torch.arange(65536, device=d) % 10)
dst = torch.empty(1 << 24, device=d)
ops = [
    ("add_16M", lambda: a + b),
    ("axpy_16M", lambda: dst.add_(a, alpha=0.5)),
    ("bias_add_65536x512", lambda: x + bias),
    ("relu_65536x512", lambda: torch.relu(x)),
    ("transpose_copy_4096", lambda: big.t().contiguous()),
    ("colsum_65536x512", lambda: x.sum(0)),
    ("rowsum_65536x512", lambda: x.sum(1)),
    ("sum_all_16M", lambda: a.sum()),
    ("conv_bias_grad_128x64x28x28", lambda: conv.sum((0, 2, 3))),
    ("softmax_65536x10", lambda: torch.softmax(logits, 1)),
    ("softmax_4096x4096", lambda: torch.softmax(big, 1)),
    ("cross_entropy_65536x10", lambda: F.cross_entropy(logits, target, label_smoothing=0.1)),
    ("argmax_65536x10", lambda: logits.argmax(1)),
    ("bernoulli_16M", lambda: dst.bernoulli_(0.5)),
]
for name, f in ops:
    print(f"{name} {time_us(f):.2f}")

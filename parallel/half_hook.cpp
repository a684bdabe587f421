#include "half_hook.h"

#include <algorithm>
#include <utility>

#include "../tensor/half.h"
#include "algorithms/ring_allreduce.h"

namespace weft::parallel {

uint16_t float_to_half(float f, HalfFormat format) {
  return format == HalfFormat::BFloat16 ? half::float_to_bf16(f) : half::float_to_fp16(f);
}

float half_to_float(uint16_t h, HalfFormat format) {
  return format == HalfFormat::BFloat16 ? half::bf16_to_float(h) : half::fp16_to_float(h);
}

namespace {

int mod(int a, int n) { return ((a % n) + n) % n; }

// Chunk c of `words` packed words among n ranks (ring_allreduce.h's split, in words so
// that a chunk never splits a word), and the values [first, last) it holds of n_values.
std::pair<int64_t, int64_t> word_chunk(int64_t words, int n, int c) { return ring_chunk(words, n, c); }
std::pair<int64_t, int64_t> value_range(int64_t words, int64_t n_values, int n, int c) {
  auto [b, e] = word_chunk(words, n, c);
  return {std::min(4 * b, n_values), std::min(4 * e, n_values)};
}

// Values [first, last) of g (first a multiple of 4: chunks start on a word), rounded to
// 16 bits, into packed words from w[0] (value i in bits [16 (i%4), 16 (i%4) + 16) of
// word (i - first)/4; the padding of a last partial word is 0).
void encode(const float* g, int64_t first, int64_t last, uint64_t* w, HalfFormat f) {
  std::fill(w, w + (last - first + 3) / 4, uint64_t{0});
  for (int64_t i = first; i < last; ++i)
    w[(i - first) / 4] |= static_cast<uint64_t>(float_to_half(g[i], f)) << (16 * (i % 4));
}

// The 16-bit values of words w into g[first, last): added (reduce-scatter) or stored.
void decode(const uint64_t* w, int64_t first, int64_t last, float* g, HalfFormat f, bool add) {
  for (int64_t i = first; i < last; ++i) {
    const float v = half_to_float(static_cast<uint16_t>(w[(i - first) / 4] >> (16 * (i % 4))), f);
    g[i] = add ? g[i] + v : v;
  }
}

}  // namespace

// A ring all-reduce (parallel/algorithms/ring_allreduce.h) whose messages carry 16-bit
// values: reduce-scatter, where each hop sends a partial sum rounded to 16 bits and the
// receiver adds it to its float32 gradient; then the owner of each finished chunk rounds
// it once more and the all-gather hands those bits round. Every rank decodes the same
// bits, so the result is identical everywhere.
WorkHandle HalfPrecisionHook::reduce(size_t, GradientBucket& bucket, Communicator& comm) {
  const Tensor& flat = bucket.flat();
  WEFT_CHECK(flat.device().is_cpu(), "comm hook ", name(), ": CPU tensors only (the bucket is on ", flat.device(),
             "); use the default all-reduce on GPUs");
  const int64_t n = flat.numel(), words = (n + 3) / 4;
  const int p = comm.size(), r = comm.rank();
  float* g = flat.data<float>();
  int64_t sent = 0;
  if (p > 1) {
    const int64_t biggest = word_chunk(words, p, 0).second;  // chunk 0 is the largest
    Tensor out = empty({biggest}, {.dtype = kInt64}), in = empty({biggest}, {.dtype = kInt64});
    auto* ow = reinterpret_cast<uint64_t*>(out.data<int64_t>());
    auto* iw = reinterpret_cast<const uint64_t*>(in.data<int64_t>());
    // One hop: chunk send_c of g goes right as 16 bits, chunk recv_c comes from the left.
    auto hop = [&](int send_c, int recv_c, bool add) {
      auto [sb, se] = word_chunk(words, p, send_c);
      auto [rb, re] = word_chunk(words, p, recv_c);
      auto [s0, s1] = value_range(words, n, p, send_c);
      auto [r0, r1] = value_range(words, n, p, recv_c);
      encode(g, s0, s1, ow, format_);
      auto sw = comm.isend(out.narrow(0, 0, se - sb), mod(r + 1, p), kTag);
      auto rw = comm.irecv(in.narrow(0, 0, re - rb), mod(r - 1, p), kTag);
      rw->wait();
      sw->wait();
      decode(iw, r0, r1, g, format_, add);
      sent += (se - sb) * 8;
    };
    for (int s = 0; s < p - 1; ++s) hop(mod(r - s, p), mod(r - s - 1, p), /*add=*/true);
    // Rank r owns chunk r+1's sum: round it as everyone else will receive it.
    auto [o0, o1] = value_range(words, n, p, mod(r + 1, p));
    for (int64_t i = o0; i < o1; ++i) g[i] = half_to_float(float_to_half(g[i], format_), format_);
    for (int s = 0; s < p - 1; ++s) hop(mod(r + 1 - s, p), mod(r - s, p), /*add=*/false);
  }
  count(sent, n, p);
  return nullptr;
}

}  // namespace weft::parallel

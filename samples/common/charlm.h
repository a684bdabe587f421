// The character-level language model of samples/train_charlm: a small decoder-only
// transformer, GPT-2's layout at toy size.
//
//   ids (B, T) int64
//     -> Embed    tok_emb(ids) + pos_emb[0..T)                      (B, T, d)
//     -> Block x L   x = x + attn(ln1(x))   causal self-attention    (B, T, d)
//                    x = x + proj(gelu(fc(ln2(x))))   d -> 4d -> d
//     -> Head     ln_f(x) @ tok_emb.weight^T                        (B, T, vocab) logits
//
// It is an nn::Sequential of those L + 2 modules, named "0" .. "L+1", so that the
// pipeline (parallel/pipeline) can cut it between any two of them, and its state_dict
// keys are the ones bench/charlm.py (the PyTorch twin) uses.
//
// TIED EMBEDDINGS. The head multiplies by the token embedding's own weight (weight
// tying: fewer parameters, and it trains better). On one device the head simply reads
// Embed's tensor, and autograd adds both uses' gradients into its one .grad. When a
// pipeline puts Embed and Head on different stages, each needs the weight on its own
// device: Head::untie() gives the head a copy as a parameter of its own ("weight"),
// and after each backward the two stages add their gradients together
// (tied_grad_exchange in train_charlm.cpp) -- Megatron-LM's scheme. Both stages then
// apply the same update to the same values, so the two copies stay equal.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "../../weft.h"

namespace weft::samples::charlm {

struct Config {
  int64_t vocab = 0;
  int64_t seq_len = 128;  // the longest context (rows of pos_emb)
  int64_t dim = 128;
  int64_t layers = 4;
  int64_t heads = 4;
};

// ids (B, T <= seq_len) -> token plus position embeddings (B, T, d).
class Embed : public nn::Module {
 public:
  Embed(int64_t vocab, int64_t seq_len, int64_t dim);
  Tensor forward(const Tensor& ids) override;
  std::shared_ptr<nn::Embedding> tok_emb, pos_emb;
};

// One pre-norm transformer block, (B, T, d) -> (B, T, d).
class Block : public nn::Module {
 public:
  Block(int64_t dim, int64_t heads);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<nn::LayerNorm> ln1;
  std::shared_ptr<nn::MultiheadAttention> attn;
  std::shared_ptr<nn::LayerNorm> ln2;
  std::shared_ptr<nn::Linear> fc, proj;
};

// (B, T, d) -> logits (B, T, vocab) through the tied embedding.
class Head : public nn::Module {
 public:
  Head(int64_t dim, std::shared_ptr<Embed> embed);
  Tensor forward(const Tensor& x) override;
  // Gives the head its own copy of the tied weight, a parameter named "weight", on the
  // head's device (call it after the head has moved there). See the tied embeddings above.
  void untie();
  bool tied() const { return !own_weight_.defined(); }
  // The weight the head multiplies by: Embed's while tied, else its own copy.
  const Tensor& weight() const;
  std::shared_ptr<nn::LayerNorm> ln_f;

 private:
  std::shared_ptr<Embed> embed_;  // not a child: its parameters belong to Embed
  Tensor own_weight_;
};

// The model, initialised as GPT-2 does at this size: embeddings N(0, 0.02), the rest
// PyTorch's defaults (which weft's layers follow).
std::shared_ptr<nn::Sequential> make_model(const Config& c);

// The head of a model make_model built (its last module).
std::shared_ptr<Head> head_of(const nn::Sequential& model);

// Pipeline stages 0 and p-1 of `comm` each hold a copy of the tied embedding (Embed's
// weight, and the untied Head's): after the backward, each adds the other's gradient,
// so both copies take the same step. Call it on those two stages only, when no other
// message between them is in flight.
void exchange_tied_grad(parallel::Communicator& comm, const Tensor& weight);

// Mean cross-entropy of logits (B, T, V) against targets (B, T).
Tensor lm_loss(const Tensor& logits, const Tensor& targets);

// Windows of the text for training: the windows of a step are drawn from one
// splitmix64 stream (the same in bench/charlm.py), so every process -- and PyTorch --
// sees the same batches for the same seed.
class WindowSampler {
 public:
  WindowSampler(const Tensor& ids, int64_t seq_len, uint64_t seed);
  // `rows` windows (rows, seq_len + 1): inputs are [:, :-1], targets [:, 1:].
  Tensor next(int64_t rows);
  uint64_t state() const { return state_; }

 private:
  Tensor ids_;
  int64_t seq_len_;
  uint64_t state_;
};
uint64_t splitmix64(uint64_t& state);

// Mean loss over the first `windows` non-overlapping windows of `ids` (eval mode, no
// tape), in batches of `batch`.
double evaluate(nn::Module& model, const Tensor& ids, int64_t seq_len, int64_t windows, int64_t batch, Device device);

// Continues `prompt` by `length` characters, sampling each from the model's softmax at
// `temperature` among the `top_k` likeliest (0: all).
std::string generate(nn::Module& model, const data::CharCorpus& corpus, const std::string& prompt, int64_t length,
                     int64_t seq_len, double temperature, int64_t top_k, Generator& gen, Device device);

}  // namespace weft::samples::charlm

#include "charlm.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace weft::samples::charlm {

Embed::Embed(int64_t vocab, int64_t seq_len, int64_t dim)
    : tok_emb(register_module("tok_emb", std::make_shared<nn::Embedding>(vocab, dim))),
      pos_emb(register_module("pos_emb", std::make_shared<nn::Embedding>(seq_len, dim))) {}

Tensor Embed::forward(const Tensor& ids) {
  WEFT_CHECK(ids.dim() == 2 && ids.size(1) <= pos_emb->weight.size(0), "charlm::Embed: ids ", ids.shape(),
             " must be (B, T) with T at most the context length ", pos_emb->weight.size(0));
  // (B, T, d) + (T, d): the position rows broadcast over the batch.
  return (*tok_emb)(ids) + pos_emb->weight.narrow(0, 0, ids.size(1));
}

Block::Block(int64_t dim, int64_t heads)
    : ln1(register_module("ln1", std::make_shared<nn::LayerNorm>(std::vector<int64_t>{dim}))),
      attn(register_module("attn", std::make_shared<nn::MultiheadAttention>(dim, heads, /*causal=*/true))),
      ln2(register_module("ln2", std::make_shared<nn::LayerNorm>(std::vector<int64_t>{dim}))),
      fc(register_module("fc", std::make_shared<nn::Linear>(dim, 4 * dim))),
      proj(register_module("proj", std::make_shared<nn::Linear>(4 * dim, dim))) {}

Tensor Block::forward(const Tensor& x) {
  const Tensor h = x + (*attn)((*ln1)(x));
  return h + (*proj)((*fc)((*ln2)(h)).gelu());
}

Head::Head(int64_t dim, std::shared_ptr<Embed> embed)
    : ln_f(register_module("ln_f", std::make_shared<nn::LayerNorm>(std::vector<int64_t>{dim}))),
      embed_(std::move(embed)) {}

const Tensor& Head::weight() const { return tied() ? embed_->tok_emb->weight : own_weight_; }

Tensor Head::forward(const Tensor& x) {
  return weft::linear((*ln_f)(x), weight());  // (B, T, d) @ (d, V): weight is (V, d)
}

void Head::untie() {
  if (!tied()) return;
  const Device device = ln_f->weight.device();
  own_weight_ = register_parameter("weight", embed_->tok_emb->weight.detach().to(device).contiguous().clone());
}

std::shared_ptr<nn::Sequential> make_model(const Config& c) {
  WEFT_CHECK(c.vocab > 0 && c.layers > 0 && c.dim % c.heads == 0, "charlm: vocab ", c.vocab, ", layers ", c.layers,
             ", dim ", c.dim, " and heads ", c.heads, " do not make a model (dim must split into the heads)");
  auto model = std::make_shared<nn::Sequential>();
  auto embed = model->add<Embed>(c.vocab, c.seq_len, c.dim);
  nn::init::normal_(embed->tok_emb->weight, 0.0, 0.02);
  nn::init::normal_(embed->pos_emb->weight, 0.0, 0.02);
  for (int64_t l = 0; l < c.layers; ++l) model->add<Block>(c.dim, c.heads);
  model->add<Head>(c.dim, embed);
  return model;
}

std::shared_ptr<Head> head_of(const nn::Sequential& model) {
  auto head = std::dynamic_pointer_cast<Head>(model[model.size() - 1]);
  WEFT_CHECK(head != nullptr, "charlm::head_of: the model's last module is a ", model[model.size() - 1]->type_name(),
             ", not a charlm::Head");
  return head;
}

void exchange_tied_grad(parallel::Communicator& comm, const Tensor& weight) {
  const int p = comm.size(), peer = comm.rank() == 0 ? p - 1 : 0;
  WEFT_CHECK(p > 1 && (comm.rank() == 0 || comm.rank() == p - 1) && weight.grad().defined(),
             "charlm::exchange_tied_grad: runs on the first and last of several stages, after a backward");
  constexpr int kTag = 7001;
  Tensor other = empty_like(weight.grad());
  auto sent = comm.isend(weight.grad(), peer, kTag);
  comm.recv(other, peer, kTag);
  sent->wait();
  autograd::NoGradGuard no_grad;
  weight.grad().add_(other);  // both ranks: g_embed + g_head (the same sum, in either order)
}

Tensor lm_loss(const Tensor& logits, const Tensor& targets) {
  return nn::cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}));
}

uint64_t splitmix64(uint64_t& state) {
  state += 0x9E3779B97F4A7C15ull;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

WindowSampler::WindowSampler(const Tensor& ids, int64_t seq_len, uint64_t seed)
    : ids_(ids.contiguous()), seq_len_(seq_len), state_(seed) {
  WEFT_CHECK(ids_.numel() > seq_len + 1, "charlm: the training text has ", ids_.numel(),
             " characters; a window needs ", seq_len + 2);
}

Tensor WindowSampler::next(int64_t rows) {
  const uint64_t span = uint64_t(ids_.numel() - seq_len_ - 1);
  Tensor out = empty({rows, seq_len_ + 1}, {.dtype = kInt64});
  const int64_t* src = ids_.data<int64_t>();
  int64_t* dst = out.data<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t start = int64_t(splitmix64(state_) % span);
    std::copy(src + start, src + start + seq_len_ + 1, dst + r * (seq_len_ + 1));
  }
  return out;
}

double evaluate(nn::Module& model, const Tensor& ids, int64_t seq_len, int64_t windows, int64_t batch, Device device) {
  const int64_t n = std::min(windows, (ids.numel() - 1) / seq_len);
  WEFT_CHECK(n > 0, "charlm::evaluate: the validation text (", ids.numel(), " characters) holds no window of ",
             seq_len + 1);
  autograd::NoGradGuard no_grad;
  model.eval();
  double total = 0;
  for (int64_t first = 0; first < n; first += batch) {
    const int64_t rows = std::min(batch, n - first);
    Tensor w = empty({rows, seq_len + 1}, {.dtype = kInt64});
    for (int64_t r = 0; r < rows; ++r)  // window k starts at k * seq_len
      w[r].copy_(ids.narrow(0, (first + r) * seq_len, seq_len + 1));
    w = w.to(device);
    const Tensor x = w.narrow(1, 0, seq_len), y = w.narrow(1, 1, seq_len);
    total += lm_loss(model(x), y).item<double>() * double(rows);
  }
  model.train();
  return total / double(n);
}

std::string generate(nn::Module& model, const data::CharCorpus& corpus, const std::string& prompt, int64_t length,
                     int64_t seq_len, double temperature, int64_t top_k, Generator& gen, Device device) {
  WEFT_CHECK(temperature > 0, "charlm::generate: temperature must be positive, got ", temperature);
  autograd::NoGradGuard no_grad;
  model.eval();
  std::vector<int64_t> ids = corpus.encode(prompt.empty() ? std::string(1, char(corpus.vocab[0])) : prompt);
  const int64_t V = corpus.vocab_size();
  for (int64_t i = 0; i < length; ++i) {
    // The last seq_len characters as context (no KV cache: recomputed each time).
    const int64_t T = std::min<int64_t>(seq_len, int64_t(ids.size()));
    const std::vector<int64_t> ctx(ids.end() - T, ids.end());
    const Tensor logits = model(tensor(ctx, {1, T}).to(device)).select(1, T - 1).reshape({V}).to(kCPU).contiguous();
    std::vector<double> p(static_cast<size_t>(V));
    for (int64_t v = 0; v < V; ++v) p[size_t(v)] = logits.data<float>()[v] / temperature;
    if (top_k > 0 && top_k < V) {  // keep the k largest logits
      std::vector<double> sorted = p;
      std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(), std::greater<>());
      for (double& x : p) if (x < sorted[size_t(top_k - 1)]) x = -INFINITY;
    }
    const double mx = *std::max_element(p.begin(), p.end());
    double sum = 0;
    for (double& x : p) sum += (x = std::exp(x - mx));
    const double u = rand({1}, {.dtype = kFloat64}, gen).item<double>() * sum;
    int64_t pick = V - 1;
    double acc = 0;
    for (int64_t v = 0; v < V; ++v)
      if ((acc += p[size_t(v)]) > u) {
        pick = v;
        break;
      }
    ids.push_back(pick);
  }
  model.train();
  return corpus.decode(ids);
}

}  // namespace weft::samples::charlm

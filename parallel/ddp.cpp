#include "ddp.h"

#include <charconv>
#include <set>

#include "../autograd/tape.h"
#include "../tensor/raw.h"
#include "parameter_check.h"
#include "trace.h"

namespace weft::parallel {

DistributedDataParallel::DistributedDataParallel(std::shared_ptr<nn::Module> module,
                                                 std::shared_ptr<Communicator> comm, const DDPOptions& opt)
    : module_(std::move(module)), comm_(std::move(comm)), opt_(opt) {
  WEFT_CHECK(module_ != nullptr, "DistributedDataParallel: the module is null");
  WEFT_CHECK(comm_ != nullptr, "DistributedDataParallel: the communicator is null");
  WEFT_CHECK(opt_.bucket_cap_mb > 0, "DistributedDataParallel: bucket_cap_mb must be positive, got ",
             opt_.bucket_cap_mb);
  // The default hook (AllReduceHook, "none") is what deterministic mode replaces; any
  // other does its own reduction, which deterministic mode cannot.
  const bool compressing = opt_.comm_hook && !dynamic_cast<const AllReduceHook*>(opt_.comm_hook.get());
  WEFT_CHECK(!(opt_.deterministic && compressing), "DistributedDataParallel: deterministic mode makes its own "
             "rank-order sum; it cannot be combined with the comm hook ", compressing ? opt_.comm_hook->name() : "");
  hook_ = opt_.comm_hook ? opt_.comm_hook : std::make_shared<AllReduceHook>();
  contributors_ = comm_->size();
  verify_same_parameters(*module_, *comm_);
  // Every replica starts from rank 0's values (and buffers: BatchNorm's running stats).
  {
    autograd::NoGradGuard no_grad;
    for (const auto& [name, t] : module_->state_dict()) comm_->broadcast(t, 0);
  }
  build_buckets();
}

DistributedDataParallel::~DistributedDataParallel() {
  for (auto& [param, id] : hooks_) param.remove_grad_ready_hook(id);
  // Never leave an all-reduce writing into a buffer that is about to be freed.
  for (auto& b : buckets_)
    if (b.work) try {
        b.work->wait();
      } catch (...) {
      }
}

Tensor DistributedDataParallel::forward(const Tensor& x) {
  trace::Scope span("forward", "compute", comm_->trace_rank());
  return (*module_)(x);
}

nn::Tensors DistributedDataParallel::forward_many(const nn::Tensors& inputs) {
  trace::Scope span("forward", "compute", comm_->trace_rank());
  return (*module_)(inputs);
}

void DistributedDataParallel::backward(const Tensor& loss) {
  trace::Scope span("backward", "compute", comm_->trace_rank());
  loss.backward();
}

void DistributedDataParallel::build_buckets() {
  const std::vector<Tensor> params = module_->parameters();
  std::vector<int64_t> bytes;
  std::vector<DType> dtypes;
  for (const Tensor& p : params) {
    bytes.push_back(p.numel() * static_cast<int64_t>(element_size(p.dtype())));
    dtypes.push_back(p.dtype());
  }
  const auto cap = static_cast<int64_t>(opt_.bucket_cap_mb * 1024 * 1024);
  for (const std::vector<size_t>& indices : assign_buckets(bytes, cap, dtypes)) {
    std::vector<Tensor> members;
    for (size_t i : indices) members.push_back(params[i]);
    buckets_.emplace_back(indices, members);
    // The compressing hooks read float32 buffers; a 16-bit bucket already sends 16 bits.
    WEFT_CHECK(buckets_.back().flat().dtype() == kFloat32 || dynamic_cast<const AllReduceHook*>(hook_.get()),
               "DistributedDataParallel: the comm hook ", hook_->name(), " compresses float32 gradients, and this ",
               "model has ", dtype_name(buckets_.back().flat().dtype()), " parameters, whose all-reduce sends 16-bit ",
               "values already; use the default hook");
  }
  // The hooks capture the bucket's index, not a pointer: buckets_ is complete by now
  // and never reallocates, but an index says plainly what is meant.
  for (size_t b = 0; b < buckets_.size(); ++b)
    for (size_t i : buckets_[b].indices()) {
      Tensor p = params[i];
      hooks_.emplace_back(p, p.register_grad_ready_hook([this, b](const Tensor&) { on_grad_ready(b); }));
    }
}

// Runs inside backward, on this rank's thread, the moment one parameter's gradient is
// final.
void DistributedDataParallel::on_grad_ready(size_t bucket) {
  if (!sync_enabled_) return;  // no_sync(): accumulate locally
  if (!buckets_[bucket].mark_ready()) return;
  if (opt_.overlap && !opt_.deterministic && hook_->asynchronous()) launch_ready_buckets();
}

void DistributedDataParallel::launch(size_t bucket) {
  GradientBucket& b = buckets_[bucket];
  trace::Scope span("launch bucket", "ddp", comm_->trace_rank(),
                    trace::enabled() ? detail::str(b.numel(), " ", dtype_name(b.flat().dtype())) : std::string());
  b.pack(/*zeros=*/!has_data_);
  // 16 bits: divided by the world size before the sum (as PyTorch's default hook does for
  // every dtype), so that a sum of loss-scaled float16 gradients cannot overflow where no
  // rank's own did. float32 sends its gradients as they are and divides once, after.
  if (is_half(b.flat().dtype())) {
    Tensor flat = b.flat();
    flat.div_(static_cast<double>(comm_->size()));
  }
  b.work = hook_->reduce(bucket, b, *comm_);  // the default: allreduce_async(b.flat(), Sum)
}

void DistributedDataParallel::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].ready()) launch(next_launch_++);
}

// The deterministic reduction: every rank gathers all ranks' buckets and adds them in
// rank order, so the float result is the same expression on every rank and every run.
// In float32 for every dtype: a 16-bit bucket's mean is divided here too and rounded
// once, at the end (unpack_divisor then says 1).
void DistributedDataParallel::fixed_order_mean(GradientBucket& b) {
  b.pack(/*zeros=*/!has_data_);
  const int64_t n = b.numel();
  const DType dtype = b.flat().dtype();
  Tensor all = empty({n * comm_->size()}, {.dtype = dtype, .device = b.flat().device()});
  comm_->allgather(b.flat(), all);
  autograd::NoGradGuard no_grad;
  Tensor flat = b.flat();
  Tensor sum = dtype == kFloat32 ? flat : empty({n}, {.device = flat.device()});  // float32 adds in place
  sum.copy_(all.narrow(0, 0, n));
  for (int r = 1; r < comm_->size(); ++r) sum.add_(raw::to_dtype(all.narrow(0, r * n, n), kFloat32));
  if (dtype == kFloat32) return;
  sum.div_(static_cast<double>(contributors_));
  flat.copy_(sum);
}

// What turns a reduced bucket into the mean over the contributing ranks: float32 holds
// the sum; a 16-bit bucket was divided by the world size before it was sent, or by the
// contributors already in deterministic mode.
double DistributedDataParallel::unpack_divisor(const GradientBucket& b) const {
  if (!is_half(b.flat().dtype())) return static_cast<double>(contributors_);
  if (opt_.deterministic) return 1.0;
  return static_cast<double>(contributors_) / static_cast<double>(comm_->size());
}

void DistributedDataParallel::synchronize() {
  WEFT_CHECK(sync_enabled_, "DistributedDataParallel::synchronize: called inside no_sync(); the accumulated "
                            "gradients are all-reduced by the first synchronize() after the guard ends");
  WEFT_CHECK(contributors_ > 0, "DistributedDataParallel::synchronize: join() said no rank has data; end the loop");
  trace::Scope span("synchronize", "ddp", comm_->trace_rank());
  try {
    if (opt_.deterministic) {
      for (auto& b : buckets_) fixed_order_mean(b);
    } else {
      // Buckets backward did not launch: overlap off, a rank without data, or
      // parameters that took no part in the loss. Still in bucket order.
      while (next_launch_ < buckets_.size()) launch(next_launch_++);
      for (auto& b : buckets_) {
        if (b.work) b.work->wait();  // synchronous hooks are done already
        b.work.reset();
      }
    }
    for (auto& b : buckets_) b.unpack(unpack_divisor(b));
    hook_->end_step();
  } catch (...) {
    reset_round();
    throw;
  }
  reset_round();
}

nn::NamedTensors DistributedDataParallel::gather_comm_hook_state() {
  const nn::NamedTensors mine = hook_->state_dict();
  const int ranks = comm_->size();
  // The ranks must hold the same tensors (the same buckets reduced): compare the count
  // and the total size before the allgathers, which need equal sizes everywhere.
  int64_t total = 0;
  for (const auto& [key, t] : mine) total += t.numel();
  Tensor sizes = tensor(std::vector<int64_t>{static_cast<int64_t>(mine.size()), total}, {2});
  Tensor all_sizes = empty({2 * ranks}, {.dtype = kInt64});
  comm_->allgather(sizes, all_sizes);
  const std::vector<int64_t> v = all_sizes.to_vector<int64_t>();
  for (int r = 1; r < ranks; ++r)
    WEFT_CHECK(v[2 * r] == v[0] && v[2 * r + 1] == v[1], "DistributedDataParallel::gather_comm_hook_state: rank ", r,
               "'s comm hook holds ", v[2 * r], " tensors of ", v[2 * r + 1], " values, rank 0's ", v[0], " of ", v[1]);
  nn::NamedTensors out(mine.size() * static_cast<size_t>(ranks));
  for (size_t i = 0; i < mine.size(); ++i) {
    const auto& [key, t] = mine[i];
    Tensor all = empty({t.numel() * ranks}, {.dtype = t.dtype()});
    comm_->allgather(t.contiguous(), all);
    for (int r = 0; r < ranks; ++r)  // rank-major: rank 0's tensors first
      out[static_cast<size_t>(r) * mine.size() + i] = {"rank" + std::to_string(r) + "." + key,
                                                       all.narrow(0, r * t.numel(), t.numel()).reshape(t.shape())};
  }
  return out;
}

void DistributedDataParallel::load_comm_hook_state(const nn::NamedTensors& all) {
  const char* what = "DistributedDataParallel::load_comm_hook_state";
  const std::string prefix = "rank" + std::to_string(comm_->rank()) + ".";
  nn::NamedTensors mine;
  std::set<int> saved_ranks;
  for (const auto& [key, t] : all) {
    int r = -1;
    const auto [end, ec] = std::from_chars(key.data() + std::min<size_t>(4, key.size()), key.data() + key.size(), r);
    WEFT_CHECK(key.starts_with("rank") && ec == std::errc() && r >= 0 && *end == '.', what, ": key '", key,
               "' is not rank<r>.<name>");
    saved_ranks.insert(r);
    if (key.starts_with(prefix)) mine.emplace_back(key.substr(prefix.size()), t);
  }
  // Every rank 0..p-1 is there, or none (a stateless hook saves nothing): a rank whose
  // part were missing would silently start from zero.
  const int p = comm_->size();
  WEFT_CHECK(saved_ranks.empty() || (int(saved_ranks.size()) == p && *saved_ranks.rbegin() == p - 1), what,
             ": the state holds the comm hooks of ", saved_ranks.size(), " rank", saved_ranks.size() == 1 ? "" : "s",
             " (the highest rank ", saved_ranks.empty() ? -1 : *saved_ranks.rbegin(), "), and this DDP has ranks 0..",
             p - 1);
  hook_->load_state_dict(mine, buckets_);
}

void DistributedDataParallel::reset_round() {
  for (auto& b : buckets_) {
    b.reset();
    b.work.reset();
  }
  next_launch_ = 0;
  has_data_ = true;
  contributors_ = comm_->size();
}

int DistributedDataParallel::join(bool has_data) {
  Tensor flag = tensor(std::vector<int64_t>{has_data ? 1 : 0});
  comm_->allreduce(flag, ReduceOp::Sum);
  has_data_ = has_data;
  contributors_ = static_cast<int>(flag.item<int64_t>());
  return contributors_;
}

}  // namespace weft::parallel

// conv2d and its two backward passes on the GPU: cuDNN when weft is built with it, and
// im2col + cuBLAS (kernels/im2col.cu) otherwise -- or when set_use_cudnn(false) asks
// for it, which is how the tests check one against the other.
//
// cuDNN offers several algorithms per convolution (implicit GEMM, FFT, Winograd, ...)
// whose speed depends on the shapes. The first call for a shape times them all
// (cudnnFind*AlgorithmEx) and caches the winner; later calls, including those inside a
// CUDA graph capture, look it up. A shape first seen during a capture (where timing is
// impossible) takes cuDNN's heuristic choice instead.
#include <atomic>
#include <map>
#include <mutex>
#include <vector>

#include "../tensor/views.h"
#include "detail.h"
#include "ops.h"
#include "weft_config.h"

#if WEFT_HAVE_CUDNN
#include <cudnn.h>
#endif

namespace weft::cuda {

// The fallback, in conv_im2col.cpp.
void conv2d_im2col(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p);
void conv2d_backward_input_im2col(const Tensor& gx, const Tensor& grad, const Tensor& w, const Conv2dParams& p);
void conv2d_backward_weight_im2col(const Tensor& gw, const Tensor& grad, const Tensor& x, const Conv2dParams& p);

namespace {
std::atomic<bool> g_use_cudnn{WEFT_HAVE_CUDNN != 0};
}
void set_use_cudnn(bool on) {
  WEFT_CHECK(!on || WEFT_HAVE_CUDNN, "cuda::set_use_cudnn: weft was built without cuDNN");
  g_use_cudnn = on;
}
bool use_cudnn() { return g_use_cudnn; }
bool built_with_cudnn() { return WEFT_HAVE_CUDNN != 0; }

#if WEFT_HAVE_CUDNN
namespace {

void check_dnn(cudnnStatus_t st, const char* op, const char* call) {
  if (st != CUDNN_STATUS_SUCCESS) throw Error(weft::detail::str(op, ": ", call, ": ", cudnnGetErrorString(st)));
}
#define DNN(op, expr) check_dnn((expr), (op), #expr)

cudnnHandle_t handle(const char* op) {
  static std::mutex mu;
  static cudnnHandle_t handles[16] = {};
  const int dev = current_device();
  WEFT_CHECK(dev >= 0 && dev < 16, op, ": device cuda:", dev, " is beyond the 16 cuDNN handles weft keeps");
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!handles[dev]) check_dnn(cudnnCreate(&handles[dev]), op, "cudnnCreate");
  }
  check_dnn(cudnnSetStream(handles[dev], detail::stream(dev)), op, "cudnnSetStream");
  return handles[dev];
}

cudnnDataType_t dnn_type(DType dt) {
  switch (dt) {
    case kFloat64: return CUDNN_DATA_DOUBLE;
    case kBFloat16: return CUDNN_DATA_BFLOAT16;
    case kFloat16: return CUDNN_DATA_HALF;
    default: return CUDNN_DATA_FLOAT;
  }
}

// The descriptors of one convolution, made from the tensors' shapes; freed on scope exit.
struct Descriptors {
  cudnnTensorDescriptor_t x{}, y{}, b{};
  cudnnFilterDescriptor_t w{};
  cudnnConvolutionDescriptor_t conv{};

  Descriptors(const char* op, const Shape& xs, const Shape& ws, const Shape& ys, const Conv2dParams& p, DType dt) {
    const cudnnDataType_t t = dnn_type(dt);
    DNN(op, cudnnCreateTensorDescriptor(&x));
    DNN(op, cudnnCreateTensorDescriptor(&y));
    DNN(op, cudnnCreateTensorDescriptor(&b));
    DNN(op, cudnnCreateFilterDescriptor(&w));
    DNN(op, cudnnCreateConvolutionDescriptor(&conv));
    DNN(op, cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, t, int(xs[0]), int(xs[1]), int(xs[2]), int(xs[3])));
    DNN(op, cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, t, int(ys[0]), int(ys[1]), int(ys[2]), int(ys[3])));
    DNN(op, cudnnSetTensor4dDescriptor(b, CUDNN_TENSOR_NCHW, t, 1, int(ys[1]), 1, 1));
    DNN(op, cudnnSetFilter4dDescriptor(w, t, CUDNN_TENSOR_NCHW, int(ws[0]), int(ws[1]), int(ws[2]), int(ws[3])));
    // 16-bit data accumulates in float32 (cuDNN's "pseudo" half / bfloat16 configuration).
    DNN(op, cudnnSetConvolution2dDescriptor(conv, int(p.padding[0]), int(p.padding[1]), int(p.stride[0]),
                                            int(p.stride[1]), int(p.dilation[0]), int(p.dilation[1]),
                                            CUDNN_CROSS_CORRELATION, is_half(dt) ? CUDNN_DATA_FLOAT : t));
    DNN(op, cudnnSetConvolutionGroupCount(conv, int(p.groups)));
    // FMA math keeps float32 exact to float32 (no TF32 tensor cores) unless allowed; 16-bit
    // data is what tensor cores are for.
    DNN(op, cudnnSetConvolutionMathType(conv, allow_tf32() || is_half(dt) ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
  }
  ~Descriptors() {
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyTensorDescriptor(b);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyConvolutionDescriptor(conv);
  }
};

// Which algorithm, in which math mode, and how much workspace, for one direction of one
// shape. With tensor-op math allowed, cuDNN ranks tensor-core and plain variants of an
// algorithm apart, each with its own workspace: the one measured is the one run, so its
// math type is set on the descriptor before the call (PyTorch does the same).
struct Choice {
  int algo;
  size_t workspace;
  cudnnMathType_t math;
};
enum class Dir { Forward, BackwardData, BackwardFilter };
// Everything that decides the best algorithm, flattened into one comparable key.
using Key = std::vector<int64_t>;

Key make_key(Dir d, const Shape& xs, const Shape& ws, const Shape& ys, const Conv2dParams& p, DType dt) {
  Key k{int64_t(d)};
  for (const Shape* s : {&xs, &ws, &ys})
    for (int64_t i = 0; i < s->size(); ++i) k.push_back((*s)[i]);
  k.insert(k.end(), {p.stride[0], p.stride[1], p.padding[0], p.padding[1], p.dilation[0], p.dilation[1], p.groups,
                     int64_t(dt), int64_t(allow_tf32())});
  return k;
}

std::mutex g_cache_mu;
std::map<Key, Choice> g_cache;

constexpr size_t kMaxWorkspace = size_t(256) << 20;

// Scratch memory from weft's caching allocator: freed back to the cache on scope exit,
// after the kernels using it were queued (stream order keeps that safe).
struct Workspace {
  void* p = nullptr;
  int dev;
  explicit Workspace(size_t n) : dev(current_device()) {
    if (n) p = device_malloc(n, dev);
  }
  ~Workspace() {
    if (p) device_free(p, dev);
  }
};

// Looks `key` up, or picks: timed (Find*Ex) in eager mode, heuristic during a capture.
template <class Find, class Heuristic>
Choice choose(const Key& key, Find find, Heuristic heuristic) {
  {
    std::lock_guard<std::mutex> lock(g_cache_mu);
    auto it = g_cache.find(key);
    if (it != g_cache.end()) return it->second;
  }
  Choice c;
  if (detail::capturing()) {
    c = heuristic();
  } else {
    Workspace ws(kMaxWorkspace);
    c = find(ws.p, kMaxWorkspace);
  }
  std::lock_guard<std::mutex> lock(g_cache_mu);
  g_cache[key] = c;
  return c;
}

// Of cuDNN's ranked results, the first that worked and fits the workspace limit.
template <class Perf>
Choice first_ok(const char* op, const Perf* perf, int n) {
  for (int i = 0; i < n; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= kMaxWorkspace)
      return {int(perf[i].algo), perf[i].memory, perf[i].mathType};
  throw Error(weft::detail::str(op, ": cuDNN found no algorithm for this convolution"));
}

// Before running: the math type of the variant measured. Not where only FMA was allowed
// (float32 without TF32): a result reporting CUDNN_DEFAULT_MATH would let TF32 in on
// Ampere and later, so the descriptor keeps its FMA.
void use_measured_math(const char* op, const Descriptors& d, const Choice& c, DType dt) {
  if (allow_tf32() || is_half(dt)) DNN(op, cudnnSetConvolutionMathType(d.conv, c.math));
}

// cuDNN's alpha and beta: pointers to host scalars of the compute type.
const void* one(DType dt) {
  static const float f = 1;
  static const double d = 1;
  return dt == kFloat64 ? static_cast<const void*>(&d) : &f;
}
const void* zero(DType dt) {
  static const float f = 0;
  static const double d = 0;
  return dt == kFloat64 ? static_cast<const void*>(&d) : &f;
}

}  // namespace
#endif

void conv2d(const Tensor& out, const Tensor& x_in, const Tensor& w_in, const Tensor& bias, const Conv2dParams& p) {
  if (!use_cudnn()) return conv2d_im2col(out, x_in, w_in, bias, p);
#if WEFT_HAVE_CUDNN
  const char* op = "conv2d";
  const Tensor x = raw::contiguous(x_in), w = raw::contiguous(w_in);
  const DType dt = x.dtype();
  Descriptors d(op, x.shape(), w.shape(), out.shape(), p, dt);
  cudnnHandle_t h = handle(op);
  constexpr int kAlgos = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  const Choice c = choose(
      make_key(Dir::Forward, x.shape(), w.shape(), out.shape(), p, dt),
      [&](void* ws, size_t wsn) {
        cudnnConvolutionFwdAlgoPerf_t perf[kAlgos];
        int n = 0;
        DNN(op, cudnnFindConvolutionForwardAlgorithmEx(h, d.x, x.raw_data(), d.w, w.raw_data(), d.conv, d.y,
                                                       out.raw_data(), kAlgos, &n, perf, ws, wsn));
        return first_ok(op, perf, n);
      },
      [&] {
        cudnnConvolutionFwdAlgoPerf_t perf[kAlgos];
        int n = 0;
        DNN(op, cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, kAlgos, &n, perf));
        return first_ok(op, perf, n);
      });
  use_measured_math(op, d, c, dt);
  Workspace ws(c.workspace);
  DNN(op, cudnnConvolutionForward(h, one(dt), d.x, x.raw_data(), d.w, w.raw_data(), d.conv,
                                  cudnnConvolutionFwdAlgo_t(c.algo), ws.p, c.workspace, zero(dt), d.y,
                                  out.raw_data()));
  if (bias.defined() && is_half(dt)) {
    // weft's own broadcast add: cuDNN's documentation does not promise cudnnAddTensor
    // for bfloat16, and this is the add the im2col path uses for every dtype.
    raw::binary_(raw::Binary::Add, out, views::view(raw::contiguous(bias), {1, out.shape()[1], 1, 1}));
  } else if (bias.defined()) {
    const Tensor b = raw::contiguous(bias);
    DNN(op, cudnnAddTensor(h, one(dt), d.b, b.raw_data(), one(dt), d.y, out.raw_data()));
  }
#endif
}

void conv2d_backward_input(const Tensor& gx, const Tensor& grad_in, const Tensor& w_in, const Conv2dParams& p) {
  if (!use_cudnn()) return conv2d_backward_input_im2col(gx, grad_in, w_in, p);
#if WEFT_HAVE_CUDNN
  const char* op = "conv2d_backward_input";
  const Tensor g = raw::contiguous(grad_in), w = raw::contiguous(w_in);
  const DType dt = g.dtype();
  Descriptors d(op, gx.shape(), w.shape(), g.shape(), p, dt);
  cudnnHandle_t h = handle(op);
  constexpr int kAlgos = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  const Choice c = choose(
      make_key(Dir::BackwardData, gx.shape(), w.shape(), g.shape(), p, dt),
      [&](void* ws, size_t wsn) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[kAlgos];
        int n = 0;
        DNN(op, cudnnFindConvolutionBackwardDataAlgorithmEx(h, d.w, w.raw_data(), d.y, g.raw_data(), d.conv, d.x,
                                                            gx.raw_data(), kAlgos, &n, perf, ws, wsn));
        return first_ok(op, perf, n);
      },
      [&] {
        cudnnConvolutionBwdDataAlgoPerf_t perf[kAlgos];
        int n = 0;
        DNN(op, cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x, kAlgos, &n, perf));
        return first_ok(op, perf, n);
      });
  use_measured_math(op, d, c, dt);
  Workspace ws(c.workspace);
  DNN(op, cudnnConvolutionBackwardData(h, one(dt), d.w, w.raw_data(), d.y, g.raw_data(), d.conv,
                                       cudnnConvolutionBwdDataAlgo_t(c.algo), ws.p, c.workspace, zero(dt),
                                       d.x, gx.raw_data()));
#endif
}

void conv2d_backward_weight(const Tensor& gw, const Tensor& grad_in, const Tensor& x_in, const Conv2dParams& p) {
  if (!use_cudnn()) return conv2d_backward_weight_im2col(gw, grad_in, x_in, p);
#if WEFT_HAVE_CUDNN
  const char* op = "conv2d_backward_weight";
  const Tensor g = raw::contiguous(grad_in), x = raw::contiguous(x_in);
  const DType dt = g.dtype();
  Descriptors d(op, x.shape(), gw.shape(), g.shape(), p, dt);
  cudnnHandle_t h = handle(op);
  constexpr int kAlgos = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  const Choice c = choose(
      make_key(Dir::BackwardFilter, x.shape(), gw.shape(), g.shape(), p, dt),
      [&](void* ws, size_t wsn) {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[kAlgos];
        int n = 0;
        DNN(op, cudnnFindConvolutionBackwardFilterAlgorithmEx(h, d.x, x.raw_data(), d.y, g.raw_data(), d.conv, d.w,
                                                              gw.raw_data(), kAlgos, &n, perf, ws, wsn));
        return first_ok(op, perf, n);
      },
      [&] {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[kAlgos];
        int n = 0;
        DNN(op, cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w, kAlgos, &n, perf));
        return first_ok(op, perf, n);
      });
  use_measured_math(op, d, c, dt);
  Workspace ws(c.workspace);
  DNN(op, cudnnConvolutionBackwardFilter(h, one(dt), d.x, x.raw_data(), d.y, g.raw_data(), d.conv,
                                         cudnnConvolutionBwdFilterAlgo_t(c.algo), ws.p, c.workspace,
                                         zero(dt), d.w, gw.raw_data()));
#endif
}

}  // namespace weft::cuda

// A program that uses weft the way a research project would: through <weft/weft.h>
// only, built either with weft as a Meson subproject or against an installed weft found
// by pkg-config (tests/consumer/run.sh does both). It exits 0 when every check passes.
//
//   consumer [--expect-cuda-disabled] [--expect-gpu | --expect-no-gpu]
//
// --expect-cuda-disabled: weft must have been built with -Dcuda=disabled, and its CUDA
//   entry points must throw "built without CUDA".
// --expect-no-gpu / --expect-gpu: whether weft::cuda::is_available() must be false/true.
#include <weft/weft.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("  %s  %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

bool near(double a, double b) { return std::fabs(a - b) <= 1e-4 * (1.0 + std::fabs(b)); }

// loss = sum((x @ w + b)^2) with x (2,3), w (3,2), b (2); the gradients by hand:
// r = x @ w + b, dL/dw = 2 x^T r, dL/db = 2 sum_rows(r).
void autograd_checks() {
  using namespace weft;
  const std::vector<float> xv = {1, 2, 3, 4, 5, 6};
  const std::vector<float> wv = {0.5f, -1, 0.25f, 2, -0.75f, 1};
  const std::vector<float> bv = {0.1f, -0.2f};
  Tensor x = tensor(xv, {2, 3});
  Tensor w = tensor(wv, {3, 2}, {.requires_grad = true});
  Tensor b = tensor(bv, {2}, {.requires_grad = true});

  Tensor loss = (x.matmul(w) + b).pow(2).sum();
  loss.backward();

  double r[2][2], want_loss = 0, want_dw[3][2] = {}, want_db[2] = {};
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      r[i][j] = bv[j];
      for (int k = 0; k < 3; ++k) r[i][j] += xv[i * 3 + k] * wv[k * 2 + j];
      want_loss += r[i][j] * r[i][j];
      want_db[j] += 2 * r[i][j];
      for (int k = 0; k < 3; ++k) want_dw[k][j] += 2 * xv[i * 3 + k] * r[i][j];
    }

  check(near(loss.item<float>(), want_loss),
        "loss = " + std::to_string(loss.item<float>()) + " (want " + std::to_string(want_loss) + ")");
  bool dw_ok = w.grad().defined() && w.grad().shape() == Shape{3, 2};
  if (dw_ok) {
    const std::vector<float> g = w.grad().to_vector<float>();
    for (int k = 0; k < 3; ++k)
      for (int j = 0; j < 2; ++j) dw_ok = dw_ok && near(g[k * 2 + j], want_dw[k][j]);
  }
  check(dw_ok, "dloss/dw = 2 x^T (x w + b)");
  bool db_ok = b.grad().defined() && b.grad().shape() == Shape{2};
  if (db_ok) {
    const std::vector<float> g = b.grad().to_vector<float>();
    db_ok = near(g[0], want_db[0]) && near(g[1], want_db[1]);
  }
  check(db_ok, "dloss/db = 2 sum_rows(x w + b)");
  check(x.grad().defined() == false, "x (no requires_grad) gets no gradient");

  {
    autograd::NoGradGuard no_grad;
    Tensor y = x.matmul(w);
    check(!y.requires_grad(), "NoGradGuard: x.matmul(w) records nothing");
  }
  check(zeros({2, 3}).sum(1, true).shape() == Shape{2, 1}, "zeros({2,3}).sum(1, true) is (2,1)");
}

void cuda_checks(bool expect_disabled, int expect_gpu /* -1: don't care */) {
  namespace cuda = weft::cuda;
  check(cuda::built_with_cuda() == bool(WEFT_HAVE_CUDA),
        "weft_config.h (WEFT_HAVE_CUDA=" + std::to_string(WEFT_HAVE_CUDA) + ") matches the library");
  if (expect_disabled) check(!cuda::built_with_cuda(), "weft was built with -Dcuda=disabled");
  if (expect_gpu >= 0)
    check(cuda::is_available() == bool(expect_gpu),
          std::string("cuda::is_available() is ") + (expect_gpu ? "true" : "false"));
  check(cuda::is_available() == (cuda::device_count() > 0), "is_available() == (device_count() > 0)");
  if (!cuda::built_with_cuda()) {
    std::string message;
    try {
      cuda::synchronize();
    } catch (const weft::Error& e) {
      message = e.what();
    }
    check(message.find("built without CUDA") != std::string::npos,
          "cuda::synchronize() throws \"built without CUDA\" (got \"" + message + "\")");
  }
}

// training/ from the installed headers: two epochs of training::plain_step on four points
// through training::Loop, its progress bar written as plain lines into a temporary file.
void train_checks() {
  using namespace weft;
  manual_seed(0);
  const data::TensorDataset points(tensor(std::vector<float>{-1, -2, 1, 2}, {4, 1}),
                                   tensor(std::vector<int64_t>{0, 0, 1, 1}));
  data::DataLoader loader(points, {.batch_size = 2});
  nn::Linear model(1, 2);
  optim::SGD opt(model.parameters(), {.lr = 0.5});
  optim::StepLR schedule(opt, 100);
  std::FILE* out = std::tmpfile();
  if (!out) {
    check(false, "tmpfile() for the progress bar");
    return;
  }
  training::Loop loop{.opt = opt, .schedule = schedule, .loader = loader, .device = kCPU, .epochs = 2,
                   .progress = {.out = out, .plain = true}, .step = training::plain_step(model, opt, 0.0)};
  const training::Throughput t = loop.run();
  check(t.samples == 8 && opt.steps_taken() == 4, "training::Loop: 2 epochs of 2 steps, 8 samples");
  std::rewind(out);
  char line[256] = {};
  std::string text;
  while (std::fgets(line, sizeof line, out)) text += line;
  std::fclose(out);
  check(text.find("epoch 2/2 [") != std::string::npos && text.find("samples/s") != std::string::npos,
        "training::ProgressBar wrote its lines into the given file");
}

}  // namespace

// The numeric version macros agree with the string, and work in #if.
#if !defined(WEFT_VERSION_MAJOR) || !defined(WEFT_VERSION_MINOR) || !defined(WEFT_VERSION_PATCH)
#error "weft_config.h has no numeric version macros"
#endif
void version_checks() {
  char made[64];
  std::snprintf(made, sizeof made, "%d.%d.%d", WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR, WEFT_VERSION_PATCH);
  check(std::strcmp(made, WEFT_VERSION) == 0, "WEFT_VERSION_MAJOR.MINOR.PATCH spell WEFT_VERSION");
}

int main(int argc, char** argv) {
  bool expect_disabled = false;
  int expect_gpu = -1;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--expect-cuda-disabled")) expect_disabled = true;
    else if (!std::strcmp(argv[i], "--expect-gpu")) expect_gpu = 1;
    else if (!std::strcmp(argv[i], "--expect-no-gpu")) expect_gpu = 0;
    else {
      std::fprintf(stderr, "usage: %s [--expect-cuda-disabled] [--expect-gpu | --expect-no-gpu]\n", argv[0]);
      return 2;
    }
  }
  std::printf("weft %s (cuda %d, cudnn %d, nccl %d, mpi %d)\n", WEFT_VERSION, WEFT_HAVE_CUDA,
              WEFT_HAVE_CUDNN, WEFT_HAVE_NCCL, WEFT_HAVE_MPI);
  try {
    version_checks();
    autograd_checks();
    train_checks();
    cuda_checks(expect_disabled, expect_gpu);
  } catch (const std::exception& e) {
    std::printf("  FAIL  unexpected exception: %s\n", e.what());
    ++failures;
  }
  std::printf("%s: %d check(s) failed\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}

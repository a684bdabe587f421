// See cuda_libraries.h.
#include "cuda_libraries.h"

#include <dlfcn.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "../tensor/error.h"
#include "cuda.h"

namespace weft::cuda::detail {

namespace {

#define WEFT_STR2(x) #x
#define WEFT_STR(x) WEFT_STR2(x)  // expands a macro first: cublasCreate -> "cublasCreate_v2"

// The CUDA library directories meson found (WEFT_CUDA_LIBDIRS, ':'-separated).
std::vector<std::string> library_dirs() {
  std::vector<std::string> dirs;
  const std::string all = WEFT_CUDA_LIBDIRS;
  for (size_t start = 0; start <= all.size();) {
    const size_t end = std::min(all.find(':', start), all.size());
    if (end > start) dirs.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  return dirs;
}

// dlopen(file), else dlopen(dir/file) for each CUDA library directory; throws saying why.
void* open_library(const std::string& file) {
  if (void* h = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
  const std::string why = dlerror();
  for (const std::string& dir : library_dirs())
    if (void* h = dlopen((dir + "/" + file).c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
  throw Error(weft::detail::str("cannot load ", file, " (", why, "). It comes with the CUDA toolkit; ",
                                "add its directory to LD_LIBRARY_PATH"));
}

template <class F>
void find(void* lib, const std::string& file, F& fn, const char* name) {
  dlerror();  // clear an earlier error, so that the one read below is this lookup's
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn) {
    const char* why = dlerror();
    throw Error(weft::detail::str(file, " has no function ", name, ": ", why ? why : "the symbol is null"));
  }
}

const std::string kCublas = "libcublas.so." WEFT_STR(CUBLAS_VER_MAJOR);
const std::string kCusparse = "libcusparse.so." WEFT_STR(CUSPARSE_VER_MAJOR);

Cublas load_cublas() {
  void* lib = open_library(kCublas);  // stays open for the life of the process
  Cublas c{};
  find(lib, kCublas, c.create, WEFT_STR(cublasCreate));
  find(lib, kCublas, c.set_workspace, WEFT_STR(cublasSetWorkspace));
  find(lib, kCublas, c.set_stream, WEFT_STR(cublasSetStream));
  find(lib, kCublas, c.set_math_mode, WEFT_STR(cublasSetMathMode));
  find(lib, kCublas, c.sgemm, WEFT_STR(cublasSgemm));
  find(lib, kCublas, c.dgemm, WEFT_STR(cublasDgemm));
  find(lib, kCublas, c.gemm_ex, WEFT_STR(cublasGemmEx));
  find(lib, kCublas, c.status_string, WEFT_STR(cublasGetStatusString));
  find(lib, kCublas, c.get_property, WEFT_STR(cublasGetProperty));
  return c;
}

Cusparse load_cusparse() {
  void* lib = open_library(kCusparse);
  Cusparse c{};
  find(lib, kCusparse, c.create, WEFT_STR(cusparseCreate));
  find(lib, kCusparse, c.set_stream, WEFT_STR(cusparseSetStream));
  find(lib, kCusparse, c.create_csr, WEFT_STR(cusparseCreateCsr));
  find(lib, kCusparse, c.create_dn_mat, WEFT_STR(cusparseCreateDnMat));
  find(lib, kCusparse, c.destroy_sp_mat, WEFT_STR(cusparseDestroySpMat));
  find(lib, kCusparse, c.destroy_dn_mat, WEFT_STR(cusparseDestroyDnMat));
  find(lib, kCusparse, c.spmm_buffer_size, WEFT_STR(cusparseSpMM_bufferSize));
  find(lib, kCusparse, c.spmm, WEFT_STR(cusparseSpMM));
  find(lib, kCusparse, c.error_string, WEFT_STR(cusparseGetErrorString));
  find(lib, kCusparse, c.get_property, WEFT_STR(cusparseGetProperty));
  return c;
}

// Loads once; a failed load is retried (and reported again) on the next call. After the
// load, a call costs one atomic read: every GEMM asks.
template <class Api>
const Api& loaded(const char* op, Api (*load)()) {
  static std::mutex mu;
  static Api api{};
  static std::atomic<bool> ok{false};
  if (ok.load(std::memory_order_acquire)) return api;
  std::lock_guard<std::mutex> lock(mu);
  if (!ok.load(std::memory_order_relaxed)) {
    try {
      api = load();
    } catch (const Error& e) {
      throw Error(weft::detail::str(op, ": ", e.what()));
    }
    ok.store(true, std::memory_order_release);
  }
  return api;
}

}  // namespace

const Cublas& cublas(const char* op) { return loaded(op, load_cublas); }
const Cusparse& cusparse(const char* op) { return loaded(op, load_cusparse); }

}  // namespace weft::cuda::detail

namespace weft::cuda {

namespace {
// "libfoo.so.N (name major.minor.patch)" from the library's own version query.
template <class GetProperty>
std::string describe(const std::string& file, const char* name, GetProperty get) {
  int major = 0, minor = 0, patch = 0;
  get(MAJOR_VERSION, &major);
  get(MINOR_VERSION, &minor);
  get(PATCH_LEVEL, &patch);
  return weft::detail::str(file, " (", name, " ", major, ".", minor, ".", patch, ")");
}
}  // namespace

std::string blas_library() {
  return describe(detail::kCublas, "cuBLAS", detail::cublas("cuda::blas_library").get_property);
}

std::string sparse_library() {
  return describe(detail::kCusparse, "cuSPARSE", detail::cusparse("cuda::sparse_library").get_property);
}

}  // namespace weft::cuda

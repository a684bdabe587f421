// See cublas_loader.h.
#include "cublas_loader.h"

#include <dlfcn.h>

#include <mutex>
#include <string>
#include <vector>

#include "../tensor/error.h"
#include "cuda.h"

namespace weft::cuda::detail {

namespace {

#define WEFT_STR2(x) #x
#define WEFT_STR(x) WEFT_STR2(x)  // expands a macro first: cublasCreate -> "cublasCreate_v2"

const std::string kLibrary = "libcublas.so." WEFT_STR(CUBLAS_VER_MAJOR);

// The CUDA library directories meson found (see WEFT_CUDA_LIBDIRS in cuda/meson.build),
// ':'-separated.
std::vector<std::string> library_dirs() {
  std::vector<std::string> dirs;
  std::string all = WEFT_CUDA_LIBDIRS;
  for (size_t start = 0; start <= all.size();) {
    const size_t end = std::min(all.find(':', start), all.size());
    if (end > start) dirs.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  return dirs;
}

void* open_library(std::string& why) {
  if (void* h = dlopen(kLibrary.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
  why = dlerror();
  for (const std::string& dir : library_dirs())
    if (void* h = dlopen((dir + "/" + kLibrary).c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
  return nullptr;
}

template <class F>
void find(void* lib, F& fn, const char* name) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn) throw Error(weft::detail::str("cuBLAS: ", kLibrary, " has no function ", name, ": ", dlerror()));
}

Cublas load() {
  std::string why;
  void* lib = open_library(why);
  if (!lib)
    throw Error(weft::detail::str("cannot load ", kLibrary, " (", why, "). It comes with the CUDA toolkit; ",
                                  "add its directory to LD_LIBRARY_PATH"));
  Cublas c{};
  find(lib, c.create, WEFT_STR(cublasCreate));
  find(lib, c.set_workspace, WEFT_STR(cublasSetWorkspace));
  find(lib, c.set_stream, WEFT_STR(cublasSetStream));
  find(lib, c.set_math_mode, WEFT_STR(cublasSetMathMode));
  find(lib, c.sgemm, WEFT_STR(cublasSgemm));
  find(lib, c.dgemm, WEFT_STR(cublasDgemm));
  find(lib, c.status_string, WEFT_STR(cublasGetStatusString));
  find(lib, c.get_property, WEFT_STR(cublasGetProperty));
  return c;  // the library stays open for the life of the process
}

}  // namespace

const Cublas& cublas(const char* op) {
  // A failed load is retried on the next call (and reported again), not cached.
  static std::mutex mu;
  static Cublas loaded{};
  static bool ok = false;
  std::lock_guard<std::mutex> lock(mu);
  if (!ok) {
    try {
      loaded = load();
    } catch (const Error& e) {
      throw Error(weft::detail::str(op, ": ", e.what()));
    }
    ok = true;
  }
  return loaded;
}

}  // namespace weft::cuda::detail

namespace weft::cuda {

std::string blas_library() {
  const detail::Cublas& c = detail::cublas("cuda::blas_library");
  int major = 0, minor = 0, patch = 0;
  c.get_property(MAJOR_VERSION, &major);
  c.get_property(MINOR_VERSION, &minor);
  c.get_property(PATCH_LEVEL, &patch);
  return weft::detail::str(detail::kLibrary, " (cuBLAS ", major, ".", minor, ".", patch, ")");
}

}  // namespace weft::cuda

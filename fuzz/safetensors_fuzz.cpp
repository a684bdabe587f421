// libFuzzer target for the safetensors reader: whatever the bytes, parse_safetensors must
// return tensors or throw weft::Error -- never crash, hang, leak or read out of bounds.
//
//   bash fuzz/run.sh                    builds this with clang (ASan + UBSan) and runs it
//   FUZZ_SECONDS=600 bash fuzz/run.sh   for longer
#include <cstddef>
#include <cstdint>

#include "../nn/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const weft::nn::SafeTensors st = weft::nn::parse_safetensors(data, size, "fuzz-input");
    // Read every byte each tensor claims: a shape larger than its storage shows up here
    // as an AddressSanitizer report rather than later in a user's program.
    unsigned checksum = 0;
    for (const auto& [name, t] : st.tensors) {
      const auto* bytes = static_cast<const uint8_t*>(t.raw_data());
      const auto nbytes = static_cast<size_t>(t.numel() * weft::element_size(t.dtype()));
      for (size_t i = 0; i < nbytes; ++i) checksum += bytes[i];
      checksum += static_cast<unsigned>(name.size());
    }
    volatile unsigned sink = checksum;
    (void)sink;
  } catch (const weft::Error&) {
    // Refusing bad input with a clear error is the expected outcome.
  }
  return 0;
}

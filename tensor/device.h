// Device: where a tensor's bytes live, as {kind, index}.
//
// `cuda:N` is a GPU. `cpu:N` are *logical* CPU devices: they share host memory, but each
// stands for one worker (a replica or a pipeline stage), so every multi-device feature
// -- replication, sharding, pipelining -- runs and is tested on a machine with no GPU.
// Ops refuse to mix tensors of different devices, exactly as they would across GPUs.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

namespace weft {

enum class DeviceKind : uint8_t { CPU, CUDA };

struct Device {
  DeviceKind kind = DeviceKind::CPU;
  int16_t index = 0;

  constexpr Device() = default;
  constexpr Device(DeviceKind k, int16_t i = 0) : kind(k), index(i) {}
  // Parses "cpu", "cpu:1", "cuda", "cuda:0"; throws weft::Error otherwise.
  Device(const std::string& spec);
  Device(const char* spec) : Device(std::string(spec)) {}

  static Device cpu(int index = 0) { return {DeviceKind::CPU, static_cast<int16_t>(index)}; }
  static Device cuda(int index = 0) { return {DeviceKind::CUDA, static_cast<int16_t>(index)}; }

  bool is_cpu() const { return kind == DeviceKind::CPU; }
  bool is_cuda() const { return kind == DeviceKind::CUDA; }
  std::string str() const;  // "cpu:0"

  friend bool operator==(const Device& a, const Device& b) { return a.kind == b.kind && a.index == b.index; }
};

std::ostream& operator<<(std::ostream& os, const Device& d);

inline constexpr Device kCPU{DeviceKind::CPU, 0};

}  // namespace weft

#include "device.h"

#include <ostream>

#include "error.h"

namespace weft {

Device::Device(const std::string& spec) {
  const auto colon = spec.find(':');
  const std::string kind_name = spec.substr(0, colon);
  if (kind_name == "cpu") kind = DeviceKind::CPU;
  else if (kind_name == "cuda") kind = DeviceKind::CUDA;
  else throw Error(detail::str("device: '", spec, "' is not a device; use cpu, cpu:N, cuda or cuda:N"));
  index = 0;
  if (colon != std::string::npos) {
    const std::string num = spec.substr(colon + 1);
    WEFT_CHECK(!num.empty() && num.size() <= 4 && num.find_first_not_of("0123456789") == std::string::npos,
               "device: '", spec, "' has a bad index; use cpu, cpu:N, cuda or cuda:N");
    index = static_cast<int16_t>(std::stoi(num));
  }
}

std::string Device::str() const { return detail::str(is_cpu() ? "cpu:" : "cuda:", index); }

std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

}  // namespace weft

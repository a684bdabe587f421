#include "parameter_check.h"

#include <map>

namespace weft::parallel {

namespace {

// One parameter as the ranks compare it: its dotted name and its shape as "[10,128]".
struct ParamDesc {
  std::string name, shape;
};

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

std::vector<ParamDesc> describe(const nn::Module& m) {
  std::vector<ParamDesc> out;
  for (const auto& [name, p] : m.named_parameters()) out.push_back({name, shape_str(p.shape())});
  return out;
}

// "name shape\n" per parameter: what is hashed and, on a mismatch, sent.
std::string serialize(const std::vector<ParamDesc>& d) {
  std::string s;
  for (const auto& p : d) s += p.name + " " + p.shape + "\n";
  return s;
}

std::vector<ParamDesc> deserialize(const std::string& s) {
  std::vector<ParamDesc> out;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t space = s.find(' ', pos), end = s.find('\n', pos);
    out.push_back({s.substr(pos, space - pos), s.substr(space + 1, end - space - 1)});
    pos = end + 1;
  }
  return out;
}

// 64-bit FNV-1a: a collision would need two different models with equal hashes.
int64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return static_cast<int64_t>(h);
}

// Every rank's string, through two allgathers: the lengths, then the padded characters
// (one int64 per character: collectives carry float32 and int64 only).
std::vector<std::string> allgather_strings(const std::string& mine, Communicator& comm) {
  const int n = comm.size();
  Tensor len = tensor(std::vector<int64_t>{static_cast<int64_t>(mine.size())});
  Tensor lens = zeros({n}, {.dtype = kInt64});
  comm.allgather(len, lens);
  int64_t longest = 0;
  for (int64_t l : lens.to_vector<int64_t>()) longest = std::max(longest, l);
  Tensor chars = zeros({std::max<int64_t>(longest, 1)}, {.dtype = kInt64});
  for (size_t i = 0; i < mine.size(); ++i) chars.data<int64_t>()[i] = static_cast<unsigned char>(mine[i]);
  Tensor all = zeros({n * chars.numel()}, {.dtype = kInt64});
  comm.allgather(chars, all);
  std::vector<std::string> out(static_cast<size_t>(n));
  const int64_t* a = all.data<int64_t>();
  for (int r = 0; r < n; ++r)
    for (int64_t i = 0; i < lens.data<int64_t>()[r]; ++i) out[r] += static_cast<char>(a[r * chars.numel() + i]);
  return out;
}

// What differs between rank r's list and rank 0's, as sentences; empty when nothing.
std::vector<std::string> differences(int r, const std::vector<ParamDesc>& mine, const std::vector<ParamDesc>& ref) {
  std::map<std::string, std::string> ref_shapes, my_shapes;
  for (const auto& p : ref) ref_shapes[p.name] = p.shape;
  for (const auto& p : mine) my_shapes[p.name] = p.shape;
  std::vector<std::string> out;
  for (const auto& p : mine) {
    auto it = ref_shapes.find(p.name);
    if (it == ref_shapes.end())
      out.push_back(detail::str("rank ", r, " has parameter ", p.name, " of shape ", p.shape, " that rank 0 does not have"));
    else if (it->second != p.shape)
      out.push_back(detail::str("rank ", r, " has parameter ", p.name, " of shape ", p.shape, ", rank 0 has ", it->second));
  }
  for (const auto& p : ref)
    if (!my_shapes.count(p.name))
      out.push_back(detail::str("rank ", r, " has no parameter ", p.name, " (rank 0 has ", p.shape, ")"));
  if (out.empty())  // same names and shapes, so the order differs
    for (size_t i = 0; i < mine.size(); ++i)
      if (mine[i].name != ref[i].name) {
        out.push_back(detail::str("rank ", r, " registers its parameters in another order: parameter ", i, " is ",
                                  mine[i].name, " on rank ", r, ", ", ref[i].name, " on rank 0"));
        break;
      }
  return out;
}

}  // namespace

void verify_same_parameters(const nn::Module& module, Communicator& comm) {
  const std::string mine = serialize(describe(module));
  const int n = comm.size();
  Tensor sig = tensor(std::vector<int64_t>{static_cast<int64_t>(module.named_parameters().size()), fnv1a(mine)});
  Tensor sigs = zeros({2 * n}, {.dtype = kInt64});
  comm.allgather(sig, sigs);
  const int64_t* s = sigs.data<int64_t>();
  bool same = true;
  for (int r = 1; r < n; ++r) same = same && s[2 * r] == s[0] && s[2 * r + 1] == s[1];
  if (same) return;

  // Step 2, on every rank alike: gather the full lists and say what differs.
  const std::vector<std::string> all = allgather_strings(mine, comm);
  const std::vector<ParamDesc> ref = deserialize(all[0]);
  std::string report;
  for (int r = 1; r < n; ++r)
    for (const std::string& d : differences(r, deserialize(all[static_cast<size_t>(r)]), ref))
      report += (report.empty() ? "" : "; ") + d;
  throw Error("DistributedDataParallel: the ranks hold different models: " + report);
}

}  // namespace weft::parallel

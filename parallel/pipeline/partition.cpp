#include "partition.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>

#include "../../tensor/error.h"

namespace weft::parallel::pipeline {

namespace {

void check_counts(const char* who, int layers, int stages) {
  WEFT_CHECK(stages >= 1, who, ": needs at least one stage, got ", stages);
  WEFT_CHECK(stages <= layers, who, ": cannot cut ", layers, " layers into ", stages,
             " non-empty stages; use at most ", layers, " stages");
}

// first_layer must start at 0 and increase strictly, staying below `layers`.
void check_boundaries(const char* who, const std::vector<int>& first, int layers) {
  WEFT_CHECK(!first.empty() && first[0] == 0, who, ": stage 0 must start at layer 0");
  for (size_t s = 1; s < first.size(); ++s) {
    WEFT_CHECK(first[s] >= 1 && first[s] < layers, who, ": stage ", s, " starts at layer ", first[s],
               ", out of range 1..", layers - 1, " for ", layers, " layers");
    WEFT_CHECK(first[s] > first[s - 1], who, ": boundaries must increase: stage ", s, " starts at layer ", first[s],
               ", stage ", s - 1, " at layer ", first[s - 1]);
  }
}

// The last layer of stage s, plus one.
int stage_end(const std::vector<int>& first, size_t s, int layers) {
  return s + 1 < first.size() ? first[s + 1] : layers;
}

// The dynamic programme of partition.h, for any measure of a stage: best[k][i] is the
// smallest possible largest value(j, i) when layers 0 .. i-1 are cut into k stages,
// using only stages j .. i-1 for which within(j, i) holds. Returns cut[k][i], where
// the last stage of that best split starts; boundaries_from walks it back.
template <class Within, class Value>
std::vector<std::vector<int>> min_max_split(int n, int p, Within within, Value value) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(p + 1, std::vector<double>(n + 1, inf));
  std::vector<std::vector<int>> cut(p + 1, std::vector<int>(n + 1, -1));
  best[0][0] = 0.0;
  for (int k = 1; k <= p; ++k)
    for (int i = k; i <= n; ++i)
      for (int j = k - 1; j < i; ++j) {  // the last stage holds layers j .. i-1
        if (!within(j, i) || best[k - 1][j] == inf) continue;
        const double v = std::max(best[k - 1][j], value(j, i));
        if (v < best[k][i]) best[k][i] = v, cut[k][i] = j;
      }
  return cut;
}

std::vector<int> boundaries_from(const std::vector<std::vector<int>>& cut, int n, int p) {
  std::vector<int> first(p);
  for (int k = p, i = n; k >= 1; --k) i = first[k - 1] = cut[k][i];
  return first;
}

}  // namespace

double Partition::slowest() const {
  return stage_cost.empty() ? 0.0 : *std::max_element(stage_cost.begin(), stage_cost.end());
}

Partition balance_by_cost(const std::vector<double>& layer_costs, int stages) {
  const int n = static_cast<int>(layer_costs.size());
  check_counts("balance_by_cost", n, stages);
  std::vector<double> prefix(n + 1, 0.0);  // prefix[i]: the cost of layers 0 .. i-1
  for (int i = 0; i < n; ++i) {
    WEFT_CHECK(std::isfinite(layer_costs[i]) && layer_costs[i] >= 0, "balance_by_cost: layer ", i, " has cost ",
               layer_costs[i], "; costs must be finite and >= 0");
    prefix[i + 1] = prefix[i] + layer_costs[i];
  }
  auto cost = [&](int j, int i) { return prefix[i] - prefix[j]; };
  auto any = [](int, int) { return true; };
  const auto by_cost = min_max_split(n, stages, any, cost);
  const std::vector<int> fastest = boundaries_from(by_cost, n, stages);

  // Many splits often tie (zero-cost layers such as ReLU can sit on either side of a
  // cut): among those whose stages all cost at most the optimum, take the one whose
  // largest stage has the fewest layers. The optimum is one of the same prefix
  // differences, so comparing against it is exact.
  double optimum = 0.0;
  for (int s = 0; s < stages; ++s) optimum = std::max(optimum, cost(fastest[s], stage_end(fastest, s, n)));
  auto fits = [&](int j, int i) { return cost(j, i) <= optimum; };
  auto count = [](int j, int i) { return static_cast<double>(i - j); };
  return evaluate_partition(layer_costs, boundaries_from(min_max_split(n, stages, fits, count), n, stages));
}

std::vector<int> balance_by_count(int layers, int stages) {
  check_counts("balance_by_count", layers, stages);
  std::vector<int> first;
  for (int s = 0, at = 0; s < stages; ++s) {
    first.push_back(at);
    at += layers / stages + (s < layers % stages ? 1 : 0);
  }
  return first;
}

std::vector<int> parse_boundaries(const std::string& text, int layers, int stages) {
  check_counts("parse_boundaries", layers, stages);
  std::vector<int> first = {0};
  // Split at every comma, so that "4," or "4,,7" show up as an empty entry.
  for (size_t at = 0; !text.empty();) {
    const size_t comma = text.find(',', at);
    const std::string item = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    size_t used = 0;
    int value = -1;
    try {
      value = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    WEFT_CHECK(used > 0 && item.find_first_not_of(' ', used) == std::string::npos, "parse_boundaries: '", item,
               "' in \"", text, "\" is not a layer index; write the first layer of each stage after the first, "
               "e.g. \"4,7\"");
    first.push_back(value);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  WEFT_CHECK(first.size() == static_cast<size_t>(stages), "parse_boundaries: \"", text, "\" gives ",
             first.size() - 1, " boundaries, but ", stages, " stages need ", stages - 1,
             " (the first layer of stages 1..", stages - 1, ")");
  check_boundaries("parse_boundaries", first, layers);
  return first;
}

Partition evaluate_partition(const std::vector<double>& layer_costs, const std::vector<int>& first_layer) {
  const int n = static_cast<int>(layer_costs.size());
  check_boundaries("evaluate_partition", first_layer, n);
  Partition part{first_layer, {}};
  for (size_t s = 0; s < first_layer.size(); ++s) {
    double sum = 0.0;
    for (int l = first_layer[s]; l < stage_end(first_layer, s, n); ++l) sum += layer_costs[l];
    part.stage_cost.push_back(sum);
  }
  return part;
}

std::string stage_table(const std::vector<int>& first_layer, const std::vector<std::string>& names,
                        const std::vector<int64_t>& params, const std::vector<double>& ms) {
  const int n = static_cast<int>(names.size());
  WEFT_CHECK(params.size() == names.size() && ms.size() == names.size(), "stage_table: ", names.size(),
             " layer names, ", params.size(), " parameter counts and ", ms.size(),
             " times; need one of each per layer");
  check_boundaries("stage_table", first_layer, n);

  struct Row {
    std::string stage, layers;
    int64_t params = 0;
    double ms = 0.0;
  };
  std::vector<Row> rows;
  Row total{"total", "", 0, 0.0};
  for (size_t s = 0; s < first_layer.size(); ++s) {
    const int begin = first_layer[s], end = stage_end(first_layer, s, n);
    Row r{std::to_string(s), names[begin] + (end - begin > 1 ? " .. " + names[end - 1] : "")};
    for (int l = begin; l < end; ++l) r.params += params[l], r.ms += ms[l];
    total.params += r.params, total.ms += r.ms;
    rows.push_back(r);
  }
  rows.push_back(total);

  size_t layers_width = std::string("layers").size();
  for (const Row& r : rows) layers_width = std::max(layers_width, r.layers.size());
  std::ostringstream out;
  out << std::left << std::setw(6) << "stage" << ' ' << std::setw(layers_width) << "layers" << std::right
      << std::setw(13) << "parameters" << std::setw(11) << "ms" << std::setw(8) << "share" << '\n';
  out << std::fixed;
  for (const Row& r : rows) {
    std::ostringstream share;  // formatted apart, so that "51.0%" is padded as one piece
    if (total.ms > 0) share << std::fixed << std::setprecision(1) << 100.0 * r.ms / total.ms << '%';
    else share << '-';
    out << std::left << std::setw(6) << r.stage << ' ' << std::setw(layers_width) << r.layers << std::right
        << std::setw(13) << r.params << std::setw(11) << std::setprecision(3) << r.ms << std::setw(8) << share.str()
        << '\n';
  }
  return out.str();
}

}  // namespace weft::parallel::pipeline

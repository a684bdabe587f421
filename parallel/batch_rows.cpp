#include "batch_rows.h"

#include "../autograd/functions.h"

namespace weft::parallel {

int64_t batch_rows(const nn::Tensors& inputs, const std::string& who) {
  WEFT_CHECK(!inputs.empty(), who, ": no input tensors");
  int64_t rows = -1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    WEFT_CHECK(t.defined(), who, ": input ", i, " is undefined");
    WEFT_CHECK(t.dim() >= 1, who, ": input ", i, " is 0-d; every input is cut along dim 0 (its batch dimension)");
    if (i == 0) rows = t.size(0);
    WEFT_CHECK(t.size(0) == rows, who, ": input ", i, " has shape ", t.shape(), " but input 0 has ", rows,
               " rows; every input is cut along dim 0, so each needs the batch's rows there (expand a shared ",
               "mask to (batch, ...) first)");
  }
  return rows;
}

std::vector<nn::Tensors> scatter_rows(const nn::Tensors& inputs, const RowRanges& rows) {
  std::vector<nn::Tensors> pieces;
  for (const auto& [start, end] : rows) {
    nn::Tensors piece;
    for (const Tensor& t : inputs) piece.push_back(t.narrow(0, start, end - start));
    pieces.push_back(std::move(piece));
  }
  return pieces;
}

namespace {

// Output i of every piece, on `device`, checked: all 0-d, or each with its piece's rows.
std::vector<Tensor> column(const std::vector<nn::Tensors>& parts, const RowRanges& rows, size_t i, Device device,
                           const std::string& who) {
  const bool scalar = parts[0][i].defined() && parts[0][i].dim() == 0;
  std::vector<Tensor> out;
  for (size_t k = 0; k < parts.size(); ++k) {
    const Tensor& t = parts[k][i];
    const int64_t n = rows[k].second - rows[k].first;
    WEFT_CHECK(t.defined() && (scalar ? t.dim() == 0 : t.dim() > 0 && t.size(0) == n), who, ": output ", i,
               " of piece ", k, " has shape ", t.defined() ? t.shape() : Shape{}, " for ", n, " rows; an output is "
               "gathered along dim 0, so it needs the piece's rows there, or is 0-d in every piece (then averaged "
               "over the pieces by their rows)");
    out.push_back(t.device() == device ? t : t.to(device));
  }
  return out;
}

}  // namespace

nn::Tensors gather_rows(const std::vector<nn::Tensors>& parts, const RowRanges& rows, Device device,
                        const std::string& who) {
  WEFT_CHECK(!parts.empty() && parts.size() == rows.size(), who, ": ", parts.size(), " pieces of output for ",
             rows.size(), " pieces of the batch");
  for (size_t k = 1; k < parts.size(); ++k)
    WEFT_CHECK(parts[k].size() == parts[0].size(), who, ": piece ", k, " returned ", parts[k].size(),
               " tensors, piece 0 ", parts[0].size());
  int64_t total = 0;
  for (const auto& [start, end] : rows) total += end - start;
  nn::Tensors out;
  for (size_t i = 0; i < parts[0].size(); ++i) {
    const std::vector<Tensor> pieces = column(parts, rows, i, device, who);
    if (pieces[0].dim() > 0) {
      out.push_back(cat(pieces, 0));
      continue;
    }
    // 0-d: sum_k out_k * n_k / B, in piece order.
    Tensor mean;
    for (size_t k = 0; k < pieces.size(); ++k) {
      const Tensor share = pieces[k] * (double(rows[k].second - rows[k].first) / double(total));
      mean = k == 0 ? share : mean + share;
    }
    out.push_back(mean);
  }
  return out;
}

}  // namespace weft::parallel

#include "trace_gather.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "../tensor/atomic_file.h"
#include "../tensor/error.h"
#include "../tensor/creation.h"
#include "trace.h"

namespace weft::parallel {
namespace {

using Clock = std::chrono::steady_clock;

// The recorder's time origin as a steady-clock time in microseconds: record one tiny
// span right now and see where the recorder puts it. Recording is switched on for it
// if a program stopped tracing after its first steps (the samples' --trace-steps).
double recorder_origin_us(int rank) {
  const double now_us = std::chrono::duration<double, std::micro>(Clock::now().time_since_epoch()).count();
  const bool was_on = trace::enabled();
  trace::enable();
  { trace::Scope anchor("trace anchor", "trace", rank); }
  trace::enable(was_on);
  const auto events = trace::events();
  for (auto it = events.rbegin(); it != events.rend(); ++it)
    if (it->name == "trace anchor" && it->pid == rank) return now_us - it->ts_us;
  throw Error(detail::str("gather_chrome_trace: rank ", rank, "'s anchor span was not recorded"));
}

// This rank's events, times made absolute, as a JSON array's text.
std::string local_events_json(int rank) {
  const double origin = recorder_origin_us(rank);
  nlohmann::json list = nlohmann::json::array();
  for (const trace::Event& e : trace::events()) {
    if (e.pid != rank || e.name == "trace anchor") continue;
    nlohmann::json ev = {{"name", e.name}, {"cat", e.cat}, {"ph", "X"},          {"pid", e.pid},
                         {"tid", e.tid},   {"ts", e.ts_us + origin}, {"dur", e.dur_us}};
    if (!e.args.empty()) ev["args"] = {{"info", e.args}};
    list.push_back(std::move(ev));
  }
  return list.dump();
}

void write_file(const std::string& path, nlohmann::json list, int ranks) {
  double first = 0;
  bool any = false;
  for (const auto& ev : list)
    if (!any || ev["ts"].get<double>() < first) first = ev["ts"].get<double>(), any = true;
  for (auto& ev : list) ev["ts"] = ev["ts"].get<double>() - first;
  for (int r = 0; r < ranks; ++r)
    list.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", r}, {"args", {{"name", "rank " + std::to_string(r)}}}});
  try {
    write_file_atomically(path, nlohmann::json{{"traceEvents", list}, {"displayTimeUnit", "ms"}}.dump(1) + '\n');
  } catch (const Error& e) {
    throw Error(detail::str("gather_chrome_trace: ", e.what()));
  }
}

}  // namespace

void gather_chrome_trace(Communicator& comm, const std::string& path) {
  if (comm.backend() == "threads") {  // one recorder already holds every rank's events
    comm.barrier();                   // every rank has finished recording
    if (comm.rank() == 0) trace::write_chrome_json(path);
    comm.barrier();
    return;
  }
  // Text travels as int64 words: allgather needs the same size everywhere, so first
  // agree on the longest text, then pad every rank's text to it.
  const std::string mine = local_events_json(comm.rank());
  const int n = comm.size();
  Tensor lengths = zeros({n}, {.dtype = kInt64});
  lengths.data<int64_t>()[comm.rank()] = static_cast<int64_t>(mine.size());
  comm.allreduce(lengths, ReduceOp::Sum);
  const int64_t* len = lengths.data<int64_t>();
  const int64_t words = (*std::max_element(len, len + n) + 7) / 8;
  Tensor packed = zeros({std::max<int64_t>(words, 1)}, {.dtype = kInt64});
  std::memcpy(packed.data<int64_t>(), mine.data(), mine.size());
  Tensor all = zeros({packed.numel() * n}, {.dtype = kInt64});
  comm.allgather(packed, all);
  if (comm.rank() != 0) return;
  nlohmann::json list = nlohmann::json::array();
  const char* bytes = reinterpret_cast<const char*>(all.data<int64_t>());
  for (int r = 0; r < n; ++r)
    for (auto& ev : nlohmann::json::parse(std::string(bytes + r * packed.numel() * 8, static_cast<size_t>(len[r]))))
      list.push_back(std::move(ev));
  write_file(path, std::move(list), n);
}

}  // namespace weft::parallel

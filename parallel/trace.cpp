#include "trace.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>

#include "../tensor/atomic_file.h"
#include "../tensor/error.h"

namespace weft::parallel::trace {
namespace {

using Clock = std::chrono::steady_clock;

struct Recorder {
  std::atomic<bool> on{false};
  std::atomic<int> next_thread{0};
  Clock::time_point epoch = Clock::now();
  std::mutex mu;
  std::vector<Event> events;
};

Recorder& recorder() {
  static Recorder r;  // constructed on first use, so the epoch is the first trace call
  return r;
}

double micros_since_epoch(Clock::time_point t) {
  return std::chrono::duration<double, std::micro>(t - recorder().epoch).count();
}

}  // namespace

void enable(bool on) { recorder().on.store(on, std::memory_order_relaxed); }
bool enabled() { return recorder().on.load(std::memory_order_relaxed); }

void clear() {
  std::lock_guard lock(recorder().mu);
  recorder().events.clear();
}

std::vector<Event> events() {
  std::lock_guard lock(recorder().mu);
  return recorder().events;
}

int thread_number() {
  thread_local int id = recorder().next_thread.fetch_add(1);
  return id;
}

Scope::Scope(const char* name, const char* cat, int rank, std::string args)
    : name_(name), cat_(cat), rank_(rank), on_(enabled()) {
  if (!on_) return;
  args_ = std::move(args);
  start_ = Clock::now();
}

Scope::~Scope() {
  if (!on_) return;
  const auto end = Clock::now();
  Event e{name_, cat_, std::move(args_), rank_, thread_number(), micros_since_epoch(start_),
          std::chrono::duration<double, std::micro>(end - start_).count()};
  Recorder& r = recorder();
  std::lock_guard lock(r.mu);
  r.events.push_back(std::move(e));
}

void write_chrome_json(const std::string& path) {
  nlohmann::json list = nlohmann::json::array();
  std::vector<int> ranks;
  for (const Event& e : events()) {
    nlohmann::json ev = {{"name", e.name}, {"cat", e.cat}, {"ph", "X"}, {"pid", e.pid},
                         {"tid", e.tid},   {"ts", e.ts_us}, {"dur", e.dur_us}};
    if (!e.args.empty()) ev["args"] = {{"info", e.args}};
    list.push_back(std::move(ev));
    if (std::find(ranks.begin(), ranks.end(), e.pid) == ranks.end()) ranks.push_back(e.pid);
  }
  // Metadata events name each pid "rank N" in the viewer.
  for (int r : ranks)
    list.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", r}, {"args", {{"name", "rank " + std::to_string(r)}}}});
  // Whole or not at all: a run killed while writing leaves no truncated JSON.
  try {
    write_file_atomically(path, nlohmann::json{{"traceEvents", list}, {"displayTimeUnit", "ms"}}.dump(1) + '\n');
  } catch (const Error& e) {
    throw Error(detail::str("trace::write_chrome_json: ", e.what()));
  }
}

}  // namespace weft::parallel::trace

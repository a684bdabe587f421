// trace: a process-wide recorder of timed spans, written as a Chrome trace.
//
//   parallel::trace::enable();
//   { parallel::trace::Scope s("allreduce", "comm", rank); ...work... }
//   parallel::trace::write_chrome_json("trace.json");   // open in chrome://tracing
//                                                       // or https://ui.perfetto.dev
// Each span becomes one "complete" event ("ph":"X") with pid = the rank (one row group
// per rank) and tid = a small number for the thread that ran it, so a rank's compute
// thread and its communication thread show as two lanes: backward on one, the
// all-reduce of finished gradient buckets on the other, overlapping.
//
// Every communicator op opens a Scope. When tracing is off a Scope costs one relaxed
// atomic load; when on, two clock reads and one short locked push_back.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace weft::parallel::trace {

void enable(bool on = true);
bool enabled();
void clear();  // forgets every recorded event

struct Event {
  std::string name;  // "allreduce"
  std::string cat;   // "comm", "compute", ...
  std::string args;  // free text shown in the viewer ("seq 3, 4096 float32"), may be ""
  int pid = 0;       // the rank
  int tid = 0;       // a small per-thread number (thread_number())
  double ts_us = 0;  // start, microseconds since the recorder's epoch
  double dur_us = 0;
};

// A copy of the events recorded so far.
std::vector<Event> events();
// Writes {"traceEvents": [...]} to `path`; throws weft::Error when it cannot.
void write_chrome_json(const std::string& path);

// 0, 1, 2, ... in the order threads first ask: a readable tid.
int thread_number();

// Records [construction, destruction) as one event when tracing was on at construction.
class Scope {
 public:
  Scope(const char* name, const char* cat, int rank, std::string args = {});
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const char* name_;
  const char* cat_;
  int rank_;
  bool on_;
  std::string args_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace weft::parallel::trace

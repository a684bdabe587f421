// gather_chrome_trace: one Chrome trace file holding every rank's timeline.
//
// With the threads backend every rank records into the same process-wide recorder
// (parallel/trace.h), so rank 0 simply writes it. Under mpirun each process has its own
// recorder with its own time origin; so each rank turns its event times into absolute
// steady-clock times (the clock all processes of one machine share), the events travel
// to every rank by one allgather of their JSON text, and rank 0 writes them into one
// file, times shifted so the earliest event starts at 0.
//
//   parallel::trace::enable();
//   ... train ...
//   parallel::gather_chrome_trace(*comm, "ddp.json");   // collective; rank 0 writes
//
// Open the file at https://ui.perfetto.dev ("Open trace file"): one process row per
// rank, its compute lane above its communication lane.
#pragma once

#include <string>

#include "comm/communicator.h"

namespace weft::parallel {

// Collective: every rank calls it at the same point. Rank 0 writes `path`.
void gather_chrome_trace(Communicator& comm, const std::string& path);

}  // namespace weft::parallel

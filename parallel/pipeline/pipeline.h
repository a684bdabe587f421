// parallel/pipeline/: pipeline parallelism, the data half: which layers go to which
// stage (partition.h), in what order each stage runs its forwards and backwards
// (schedule.h), whether that order works and how much of the time it idles
// (simulator.h), and a picture of it (render.h); then the tensor half: a Sequential
// split across devices (shard.h) and the executor that runs one stage's list of a
// schedule over a Communicator (stage.h).
#pragma once

#include "partition.h"
#include "render.h"
#include "schedule.h"
#include "shard.h"
#include "simulator.h"
#include "stage.h"

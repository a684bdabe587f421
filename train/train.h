// train/: what a training program needs around its step -- the epoch loop with hooks
// (loop.h) and the progress line it draws (progress.h).
#pragma once

#include "loop.h"
#include "progress.h"

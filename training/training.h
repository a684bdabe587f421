// training/: what a training program needs around its step -- the epoch loop with hooks
// (loop.h) and the progress line it draws (progress.h).
//
// The namespace is weft::training, not weft::train: research code says
// `using namespace weft;` and defines a function train(...), and a namespace of that
// name would make every unqualified call to it ambiguous.
#pragma once

#include "loop.h"
#include "progress.h"

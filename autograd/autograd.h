// autograd/: the tape, the differentiable ops, and gradcheck.
#pragma once

#include "autocast.h"
#include "functions.h"
#include "gradcheck.h"
#include "tape.h"

// optim/: optimizers, learning-rate schedules, gradient clipping.
#pragma once

#include "adam.h"
#include "optimizer.h"
#include "checkpoint.h"
#include "grad_scaler.h"
#include "scheduler.h"
#include "sgd.h"

// nn/: modules, layers, losses, initialisers, checkpoints.
#pragma once

#include "attention.h"
#include "batchnorm.h"
#include "conv.h"
#include "embedding.h"
#include "init.h"
#include "layers.h"
#include "linear.h"
#include "loss.h"
#include "safetensors.h"
#include "module.h"
#include "normalization.h"
#include "replicate.h"
#include "sequential.h"

// data/: reading datasets and feeding them to training in batches.
#pragma once

#include "dataloader.h"
#include "dataset.h"
#include "distributed_sampler.h"
#include "device_stager.h"
#include "idx.h"
#include "text.h"

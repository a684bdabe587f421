// weft: a small C++20 tensor and autograd framework with built-in parallelism.
//
//   #include <weft/weft.h>
//   auto w = weft::randn({784, 10}, {.requires_grad = true});
//   auto loss = x.matmul(w).log_softmax(1).mean();
//   loss.backward();
#pragma once

#include "weft_config.h"
#include "tensor/tensor.h"
#include "tensor/kernels.h"
#include "tensor/memory.h"
#include "autograd/autograd.h"
#include "cuda/cuda.h"
#include "nn/nn.h"
#include "optim/optim.h"
#include "data/data.h"
#include "training/training.h"
#include "parallel/comm/communicator.h"
#include "prune/prune.h"
#include "parallel/comm/threads_communicator.h"
#include "parallel/comm/mpi_communicator.h"
#include "parallel/comm/nccl_communicator.h"
#include "parallel/algorithms/ring_allreduce.h"
#include "parallel/algorithms/naive_allreduce.h"
#include "parallel/algorithms/parameter_server.h"
#include "parallel/trace.h"
#include "parallel/trace_gather.h"
#include "parallel/data_parallel.h"
#include "parallel/ddp.h"
#include "parallel/prune_sync.h"
#include "parallel/pipeline/pipeline.h"

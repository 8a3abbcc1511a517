// Kernel selection: each node gets a kernel name and a precision.
#pragma once

#include "ir/graph.h"
#include "kiln/builder.h"
#include "kiln/logger.h"

namespace kiln::select {

/// On the CPU: the first registered fast kernel that applies, else "ref". Nodes
/// compute in FP32 on the CPU whatever the precision flags say (the CPU backend
/// has no reduced-precision kernels yet); a warning says so once.
/// For CUDA engines: the first CUDA kernel that applies; a node without one keeps
/// its CPU kernel and runs on the CPU (listed once at info level).
Status select_kernels(ir::Graph& g, const BuilderConfig& config, Logger& logger);

}  // namespace kiln::select

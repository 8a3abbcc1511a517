// Runs one node's CUDA kernel on host tensors: copies inputs to the device,
// allocates outputs with the given dtypes/dims, launches, copies back. For the
// op harness, the conformance runner and the builder's tactic timing.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/types.h"

namespace kiln::cuda {

struct NodeRunOptions {
  int device = 0;
  bool allow_tf32 = false;  ///< tests compare FP32 kernels exactly
  int timing_iterations = 0;  ///< > 0: also time the kernel (median ms into *ms)
  float* ms = nullptr;
};

/// Runs CUDA kernel `kernel` (a name in the op's `cuda` list) of `node`.
/// `outputs` gives each output's dtype and dims (e.g. from the reference run).
Result<std::vector<Tensor>> run_node_on_device(const ir::Node& node, const std::string& kernel,
                                               const std::vector<const Tensor*>& inputs,
                                               const std::vector<Tensor>& outputs,
                                               const NodeRunOptions& opts = {});

}  // namespace kiln::cuda

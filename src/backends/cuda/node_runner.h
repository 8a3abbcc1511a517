// Runs one node's CUDA kernel on host tensors: copies inputs to the device,
// allocates outputs with the given dtypes/dims, launches, copies back. For the
// op harness, the conformance runner and the builder's tactic timing (which
// uploads once with upload_node_io and launches many times on the same buffers).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backends/cuda/api.h"
#include "ir/graph.h"
#include "kiln/types.h"

namespace kiln::cuda {

struct NodeRunOptions {
  int device = 0;
  bool allow_tf32 = false;    ///< tests compare FP32 kernels exactly
  int timing_iterations = 0;  ///< > 0: also time the kernel (median ms into *ms)
  float* ms = nullptr;
  int64_t tactic = -1;  ///< >= 0: run this tactic (kiln.tactic set on a copy of the node)
};

/// Runs CUDA kernel `kernel` (a name in the op's `cuda` list) of `node`.
/// `outputs` gives each output's dtype and dims (e.g. from the reference run).
Result<std::vector<Tensor>> run_node_on_device(const ir::Node& node, const std::string& kernel,
                                               const std::vector<const Tensor*>& inputs,
                                               const std::vector<Tensor>& outputs, const NodeRunOptions& opts = {});

/// A node's inputs and outputs in device memory, uploaded once for many launches.
struct DeviceNodeIO {
  std::vector<DeviceBuffer> buffers;
  std::vector<Tensor> inputs, outputs;     ///< device views of `buffers` (null where absent)
  std::vector<const Tensor*> host_inputs;  ///< the caller's host tensors (the kernels' host values)
};

/// Uploads `inputs` (host; kept alive by the caller) and allocates `outputs` (dtype
/// and dims; a null tensor or absent node output is skipped) on opts.device.
/// Where `repeat_to[i]` has dims, inputs[i] is a pattern that the device repeats
/// to those dims (the tactic timer's random activations: a batch-256 activation is
/// gigabytes that need not cross the bus), and the kernel sees no host value for it.
Result<std::unique_ptr<DeviceNodeIO>> upload_node_io(const ir::Node& node, const std::vector<const Tensor*>& inputs,
                                                     const std::vector<Tensor>& outputs,
                                                     const NodeRunOptions& opts = {},
                                                     const std::vector<std::optional<Dims>>& repeat_to = {});

/// The tactic IDs `kernel` offers for the uploaded shapes, best guess first; empty
/// when the kernel has no `tactics` function. Launches the kernel once.
Result<std::vector<int64_t>> node_tactics_on_device(const ir::Node& node, const std::string& kernel, DeviceNodeIO& io,
                                                    const NodeRunOptions& opts = {});

/// Runs `kernel` once per tactic in `tactics`, eagerly, and waits: the first run of a
/// tactic that compiles code (cuDNN's runtime fusion) compiles it here. A tactic that
/// fails is skipped (timing reports it); the error is the stream's.
Status warm_node_on_device(const ir::Node& node, const std::string& kernel, DeviceNodeIO& io,
                           const std::vector<int64_t>& tactics, const NodeRunOptions& opts = {});

/// Runs `kernel` once with opts.tactic and returns the state it reported (report_state
/// in tactic_sink.h: a compiled plan the engine can keep), empty when it reported none.
Result<std::string> node_state_on_device(const ir::Node& node, const std::string& kernel, DeviceNodeIO& io,
                                         const NodeRunOptions& opts = {});

/// Median milliseconds of opts.timing_iterations samples of `kernel` (opts.tactic
/// selects the tactic) on `io`, after `warmup` untimed launches. A sample averages
/// up to 8 back-to-back launches, as many as make it last ~0.1 ms (one for kernels
/// that long): short kernels need them against event resolution, long ones do not.
Result<float> time_node_on_device(const ir::Node& node, const std::string& kernel, DeviceNodeIO& io, int warmup,
                                  const NodeRunOptions& opts);

}  // namespace kiln::cuda

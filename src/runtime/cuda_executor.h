// The CUDA executor: runs a planned engine graph on one GPU.
//
// Weights are uploaded once per engine (CudaWeights, shared by contexts). For
// each set of input dims a context builds a Plan once: shapes of every value
// (shape arithmetic such as Shape -> Gather -> Concat is evaluated on the host
// and never launched), a device address for every value (the activation arena
// sized by the memory planner, the weights, plan-owned I/O staging buffers), and
// one step per node: a CUDA kernel, or a CPU fallback (copy in, run the CPU
// kernel, copy out) for nodes without one. Enqueue copies the caller's inputs
// into the staging buffers, launches the steps (or replays the plan's captured
// CUDA graph) and copies the outputs out — on the caller's stream. Without a
// CUDA graph, caller buffers in device memory are used in place (no copies).
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "backends/cuda/api.h"
#include "runtime/engine_data.h"

namespace kiln {

/// An engine's weights on the device.
struct CudaWeights {
  int device = 0;
  cuda::DeviceBuffer buffer;
  std::map<const ir::Value*, void*> address;
};

/// Checks the device (exists, same compute capability as the engine) and uploads every initializer.
Result<std::shared_ptr<CudaWeights>> upload_weights(const EngineData& e, int device);

/// Timing of one enqueue (filled when requested).
struct EnqueueTiming {
  float h2d_ms = 0, compute_ms = 0, d2h_ms = 0;
};

/// Per-context device state.
class CudaExecutor {
 public:
  static Result<std::unique_ptr<CudaExecutor>> create(const EngineData& e, std::shared_ptr<CudaWeights> w);
  ~CudaExecutor();

  /// Runs with the bound buffers (host or device, detected per pointer) on `stream`
  /// (nullptr: the context's own). Returns when the work is enqueued; with `sync`, when it is done.
  Status enqueue(const std::map<std::string, Dims>& input_dims, const std::map<std::string, void*>& addresses,
                 void* stream, bool sync, EnqueueTiming* timing = nullptr);
  /// A host copy of graph output `name` from the last (completed) run.
  Result<Tensor> output_to_host(const std::string& name);
  /// Dims of every graph output after the last enqueue.
  const std::map<std::string, Dims>& output_dims() const { return output_dims_; }
  /// Capture each plan's kernels into a CUDA graph and replay it (plans with CPU fallbacks are not captured).
  void set_use_cuda_graph(bool on) { use_graph_ = on; }
  /// Number of nodes that ran on the CPU in the last enqueue (fallbacks).
  int last_fallback_count() const { return last_fallbacks_; }
  /// Layer names with their time in ms, from the last enqueue made with profiling on.
  void set_profiling(bool on) { profiling_ = on; }
  const std::vector<std::pair<std::string, float>>& layer_times() const { return layer_times_; }

 private:
  struct Plan;
  using Bindings = std::unordered_map<const ir::Value*, void*>;
  CudaExecutor() = default;
  Result<Plan*> plan_for(const std::map<std::string, Dims>& input_dims, const std::map<std::string, Tensor>& values);
  /// Graph inputs read where a kernel needs host values (shape tensors): their
  /// contents are part of the plan's key.
  std::set<const ir::Value*> value_inputs_;
  /// Nodes read only by Shape/Size (ir/shape_only.h): never launched.
  std::unordered_set<const ir::Node*> shape_only_;
  Status run_steps(Plan& p, void* stream, const Bindings& direct);
  /// cuda::is_device_pointer, remembered per address.
  bool is_device_pointer(const void* p);

  const EngineData* engine_ = nullptr;
  std::shared_ptr<CudaWeights> weights_;
  std::unique_ptr<cuda::Handles> handles_;
  void* own_stream_ = nullptr;
  cuda::DeviceBuffer arena_;
  std::map<std::string, std::unique_ptr<Plan>> plans_;
  std::map<std::string, Dims> output_dims_;
  bool use_graph_ = false;
  bool profiling_ = false;
  int last_fallbacks_ = 0;
  std::vector<std::pair<std::string, float>> layer_times_;
  Plan* last_plan_ = nullptr;
  Plan* looked_up_ = nullptr;  ///< the plan for looked_up_dims_ and no shape-tensor values
  std::map<std::string, Dims> looked_up_dims_;
  std::unordered_map<const void*, bool> pointer_kinds_;
  /// Graph recaptures for new caller buffers before a plan's graph stages I/O instead.
  static constexpr int kMaxRebinds = 4;
  std::unique_ptr<cuda::EventTimer> timers_[3];                   ///< enqueue timing: H2D, compute, D2H
  std::unordered_map<const ir::Value*, Tensor> rt_outputs_;       // device, dims known at run time only
  std::unordered_map<const ir::Value*, Tensor> rt_host_outputs_;  // their host copies
};

}  // namespace kiln

// Runtime, Engine and ExecutionContext: load an engine file and execute it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/logger.h"
#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln {

/// Where the time of one run went (CUDA engines; milliseconds, from CUDA events).
struct RunTiming {
  float h2d_ms = 0;      ///< copying inputs into the engine
  float compute_ms = 0;  ///< the layers
  float d2h_ms = 0;      ///< copying outputs out
};

/// Whether an I/O tensor is read or written by the engine.
enum class TensorIOMode { kNone, kInput, kOutput };

class ExecutionContext;
struct EngineData;
namespace plan {
struct EngineModel;
}

/// A deserialized, immutable engine. Shared by its execution contexts.
class Engine {
 public:
  ~Engine();
  /// Inputs and outputs, inputs first, in network order.
  int num_io_tensors() const;
  /// Name of I/O tensor i ("" if out of range).
  std::string get_tensor_name(int i) const;
  /// kInput, kOutput or kNone (unknown name).
  TensorIOMode get_tensor_mode(const std::string& name) const;
  /// Element type (kUndefined for an unknown name).
  DataType get_tensor_dtype(const std::string& name) const;
  /// Dims with -1 for dynamic dims (empty for an unknown name).
  Dims get_tensor_shape(const std::string& name) const;
  /// Symbolic names of dims ("" where unnamed).
  std::vector<std::string> get_tensor_dim_names(const std::string& name) const;
  /// Number of optimization profiles (at least 1).
  int num_optimization_profiles() const;
  /// min/opt/max of input `name` in `profile` ({min, opt, max}; empty if none).
  std::vector<Dims> get_tensor_profile_shape(const std::string& name, int profile) const;
  /// Bytes of activation memory a context needs at the profiles' max shapes.
  uint64_t activation_bytes() const;
  /// Bytes of weights.
  uint64_t weight_bytes() const;
  /// Number of planned layers.
  int num_layers() const;
  /// A JSON description: I/O, profiles, layers with kernel and precision, memory.
  std::string inspect_json() const;
  /// "cpu" or "cuda".
  std::string device() const;
  /// User metadata stored at build time.
  const std::map<std::string, std::string>& metadata() const;
  /// A new context; several may run concurrently.
  std::unique_ptr<ExecutionContext> create_execution_context();

  /// Internal.
  explicit Engine(std::shared_ptr<EngineData> data);
  const std::shared_ptr<EngineData>& data() const { return data_; }

 private:
  std::shared_ptr<EngineData> data_;
};

/// Per-run state: chosen profile, input shapes, bound buffers, activation arena.
class ExecutionContext {
 public:
  ~ExecutionContext();
  /// Selects the optimization profile used for shape checks (default 0).
  Status set_optimization_profile(int index);
  int get_optimization_profile() const { return profile_; }
  /// Sets a dynamic input's dims; fails naming the dim and its range if outside the profile.
  Status set_input_shape(const std::string& name, const Dims& dims);
  /// Dims of any I/O tensor for the current input shapes; -1 where data-dependent.
  Dims get_tensor_shape(const std::string& name) const;
  /// Binds caller memory to an I/O tensor: host memory on the CPU; host or device
  /// memory for CUDA engines (detected per pointer).
  Status set_tensor_address(const std::string& name, void* data);
  /// Runs synchronously with the bound buffers.
  Status execute();
  /// CUDA engines: enqueues the run on `stream` (a cudaStream_t; nullptr = the
  /// context's own stream) and returns without waiting, except where a layer runs
  /// on the CPU or an output's dims depend on data. CPU engines run synchronously.
  Status enqueue(void* stream);
  /// CUDA engines: capture each input shape's layers once into a CUDA graph and
  /// replay it (layers that fall back to the CPU disable capture for that shape).
  /// Device buffers bound with set_tensor_address are read and written in place by
  /// the graph: binding other ones recaptures it, and after a few rebinds the graph
  /// copies I/O through its own buffers instead (keep buffers bound for the fastest runs).
  void set_use_cuda_graph(bool on);
  /// Records RunTiming for every run (adds event records; CUDA engines).
  void set_timing(bool on);
  RunTiming last_timing() const;
  /// Records the time of each layer on the next runs (serializes the layers).
  void set_profiling(bool on);
  /// (layer name, milliseconds) of the last profiled run.
  std::vector<std::pair<std::string, float>> layer_times() const;
  /// Layers of the last run that had no CUDA kernel and ran on the CPU.
  int last_fallback_count() const;
  /// Convenience: binds, sets shapes, runs, and returns freshly allocated outputs.
  Result<std::map<std::string, Tensor>> infer(const std::map<std::string, Tensor>& inputs);
  /// The engine this context runs.
  const Engine& engine() const { return *engine_; }

  /// Internal.
  ExecutionContext(const Engine* engine);

 private:
  struct State;
  Status run(void* stream, bool sync);
  Status run_cuda(void* stream, bool sync);
  const Engine* engine_;
  int profile_ = 0;
  std::unique_ptr<State> state_;
};

/// Deserializes engine files.
class Runtime {
 public:
  explicit Runtime(Logger& logger) : logger_(logger) {}
  /// CUDA device that deserialized CUDA engines run on (default 0).
  void set_device_index(int index) { device_index_ = index; }
  int device_index() const { return device_index_; }
  /// Parses and checks an engine (magic, version, device, checksum).
  Result<std::unique_ptr<Engine>> deserialize(const void* data, size_t size);
  /// Reads a file then deserialize()s it.
  Result<std::unique_ptr<Engine>> deserialize_file(const std::string& path);

 private:
  Result<std::unique_ptr<Engine>> deserialize_cuda(plan::EngineModel m);
  Logger& logger_;
  int device_index_ = 0;
};

}  // namespace kiln

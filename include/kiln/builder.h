// Builder and BuilderConfig: network -> serialized engine.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/logger.h"
#include "kiln/network.h"
#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln {

/// min/opt/max dims for each dynamic input.
class OptimizationProfile {
 public:
  /// Sets the range for input `name`; each of min <= opt <= max elementwise.
  Status set_shape(const std::string& name, const Dims& min, const Dims& opt, const Dims& max);
  /// True if `name` has a range.
  bool has_shape(const std::string& name) const;
  /// The three dims for `name` (empty if unset).
  Dims get_min(const std::string& name) const;
  Dims get_opt(const std::string& name) const;
  Dims get_max(const std::string& name) const;
  /// Names with a range, sorted.
  std::vector<std::string> names() const;

 private:
  struct Range {
    Dims min, opt, max;
  };
  std::map<std::string, Range> ranges_;
};

/// Builder switches (TensorRT's BuilderFlag names).
enum class BuilderFlag { kFP16, kBF16, kINT8, kFP8, kTF32, kStrictTypes, kDebug };
/// Memory pools whose limit can be set.
enum class MemoryPoolType { kWorkspace };
/// Where the engine will run.
enum class DeviceType { kCPU, kCUDA };

/// Receives build progress (TensorRT: IProgressMonitor). Phases nest: each names its
/// parent (nullptr for the outermost). Calls come from the building thread.
class ProgressMonitor {
 public:
  virtual ~ProgressMonitor() = default;
  /// Phase `name` starts, inside `parent` (or nullptr), with `steps` steps to report.
  virtual void phase_start(const char* name, const char* parent, int steps) {}
  /// Step `step` (0-based) of phase `name` is done; return false to cancel the build.
  virtual bool step_complete(const char* name, int step) { return true; }
  /// Phase `name` ends (also when the build fails or is cancelled).
  virtual void phase_finish(const char* name) {}
};

/// Options for one build.
class BuilderConfig {
 public:
  /// Turns a flag on.
  void set_flag(BuilderFlag f) { flags_ |= 1u << static_cast<int>(f); }
  /// Turns a flag off.
  void clear_flag(BuilderFlag f) { flags_ &= ~(1u << static_cast<int>(f)); }
  /// True if a flag is on.
  bool get_flag(BuilderFlag f) const { return flags_ & (1u << static_cast<int>(f)); }
  /// Limits a memory pool (bytes).
  void set_memory_pool_limit(MemoryPoolType, uint64_t bytes) { workspace_ = bytes; }
  uint64_t get_memory_pool_limit(MemoryPoolType) const { return workspace_; }
  /// Adds a profile; returns its index.
  int add_optimization_profile(const OptimizationProfile& p) {
    profiles_.push_back(p);
    return static_cast<int>(profiles_.size()) - 1;
  }
  const std::vector<OptimizationProfile>& profiles() const { return profiles_; }
  /// 0 (fastest build) .. 5 (widest search); default 3. CUDA engines time the
  /// top 0 / 2 / 4 / 8 / 16 / all candidate tactics of each layer (docs/tactics.md).
  void set_optimization_level(int level) { opt_level_ = level; }
  int optimization_level() const { return opt_level_; }
  /// File of tactic timings reused across CUDA builds ("" = none): read before
  /// timing, created or rewritten after it (docs/tactics.md).
  void set_timing_cache_path(const std::string& path) { timing_cache_path_ = path; }
  const std::string& timing_cache_path() const { return timing_cache_path_; }
  /// Target device; default CPU.
  void set_device(DeviceType d) { device_ = d; }
  DeviceType device() const { return device_; }
  /// CUDA device the engine is built (and its kernels timed) on; default 0.
  void set_device_index(int index) { device_index_ = index; }
  int device_index() const { return device_index_; }
  /// Reduced-precision engines: the dtype of float inputs / outputs (kFloat32, the
  /// default, keeps FP32 I/O with casts inside; kFloat16 or kBFloat16 passes the
  /// engine's own precision through — trtexec's --input/output-io-formats).
  void set_io_dtypes(DataType inputs, DataType outputs) {
    io_inputs_ = inputs;
    io_outputs_ = outputs;
  }
  DataType input_io_dtype() const { return io_inputs_; }
  DataType output_io_dtype() const { return io_outputs_; }
  /// Reports the build's phases to `monitor` (not owned; nullptr: none). A monitor
  /// that returns false from step_complete cancels the build ("build cancelled").
  void set_progress_monitor(ProgressMonitor* monitor) { progress_ = monitor; }
  ProgressMonitor* get_progress_monitor() const { return progress_; }
  /// Free-form metadata stored in the engine.
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  uint32_t flags_ = 1u << static_cast<int>(BuilderFlag::kTF32);  // TF32 on by default, as in TensorRT
  uint64_t workspace_ = 0;
  int opt_level_ = 3;
  std::string timing_cache_path_;
  DeviceType device_ = DeviceType::kCPU;
  int device_index_ = 0;
  DataType io_inputs_ = DataType::kFloat32, io_outputs_ = DataType::kFloat32;
  std::vector<OptimizationProfile> profiles_;
  std::map<std::string, std::string> metadata_;
  ProgressMonitor* progress_ = nullptr;
};

/// Builds engines.
class Builder {
 public:
  explicit Builder(Logger& logger);
  ~Builder();
  /// An empty network.
  std::unique_ptr<NetworkDefinition> create_network();
  /// A config with defaults.
  std::unique_ptr<BuilderConfig> create_builder_config();
  /// An empty profile (fill with set_shape, then add to the config).
  OptimizationProfile create_optimization_profile() { return OptimizationProfile(); }
  /// Optimizes `network` and serializes an engine. The network is not modified.
  Result<std::vector<uint8_t>> build_serialized_network(const NetworkDefinition& network,
                                                        const BuilderConfig& config);
  /// Whether the platform has fast FP16 (a CUDA device of sm_53+).
  bool platform_has_fast_fp16() const;

 private:
  Logger& logger_;
};

}  // namespace kiln

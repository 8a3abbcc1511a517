// Shared state of the kiln subcommands: options, the logger, shape specs and
// turning a model path (engine file or ONNX) into a ready Engine.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/kiln.h"

namespace CLI {
class App;
}

namespace kiln::cli {

/// Options that control building an engine from ONNX (kiln build, and run/bench of .onnx).
struct BuildOptions {
  std::vector<std::string> shapes;                              ///< --shapes; for `build`, one profile per occurrence
  std::vector<std::string> min_shapes, opt_shapes, max_shapes;  ///< one per profile
  bool fp16 = false, bf16 = false, int8 = false, fp8 = false;
  bool tf32 = false, no_tf32 = false, strict_types = false;
  double workspace_mib = 0;  ///< 0: builder default
  int opt_level = 3;
  std::string timing_cache;  ///< --timing-cache FILE ("" = none)
  std::string device = "cpu";
  std::string input_io = "fp32", output_io = "fp32";  ///< --input-io-formats / --output-io-formats
  std::vector<std::string> metadata;  ///< key=value
  bool verbose = false;
  bool no_progress = false;  ///< --no-progress: no progress bar even on a terminal
};

/// Parses --device: "cpu", "cuda", "gpu", "cuda:N" or "N" (CUDA device N).
Status parse_device(const std::string& text, DeviceType& type, int& index);

/// Adds the build flags to a subcommand. `build_cmd` adds --shapes too (run/bench own theirs).
void add_build_options(CLI::App* app, BuildOptions& o, bool build_cmd);

/// Prints kiln's diagnostics as "kiln: warning: ..." on stderr.
class CliLogger : public Logger {
 public:
  explicit CliLogger(bool verbose) : Logger(verbose ? Severity::kVerbose : Severity::kWarning) {}
  void log(Severity severity, const std::string& message) override;
};

/// Input name -> dims.
using ShapeMap = std::map<std::string, Dims>;

/// Parses trtexec-style "name:1x3x224x224,name2:1x128" (split on the last ':'; an
/// empty dims part is a scalar). `flag` names the option in errors.
Result<ShapeMap> parse_shape_spec(const std::string& spec, const std::string& flag);
/// Parses "AxBxC" (empty -> scalar).
Result<Dims> parse_dims(const std::string& text, const std::string& what);

/// True when the file starts with the engine magic "KILN".
bool looks_like_engine(const std::vector<uint8_t>& bytes);

/// What building produced.
struct BuildInfo {
  double seconds = 0;
  size_t engine_bytes = 0;
};

/// Parses an ONNX file and builds a serialized engine. `run_shapes` are shapes the
/// caller will run with; they define the profile of dynamic inputs when no
/// --min/--opt/--max-shapes were given.
Result<std::vector<uint8_t>> build_from_onnx(const std::string& path, const BuildOptions& o, const ShapeMap& run_shapes,
                                             Logger& logger, BuildInfo* info);

/// A deserialized engine, from an engine file or built in memory from ONNX.
struct LoadedEngine {
  std::unique_ptr<Engine> engine;
  bool built = false;  ///< true when built from ONNX in this process
  BuildInfo build;
  size_t file_bytes = 0;
};

/// Loads `path`: an engine file (by magic) or an ONNX model built with `o`.
Result<LoadedEngine> load_engine(const std::string& path, const BuildOptions& o, const ShapeMap& run_shapes,
                                 Logger& logger);

/// Inputs of an engine, in order.
std::vector<std::string> engine_inputs(const Engine& e);
/// Outputs of an engine, in order.
std::vector<std::string> engine_outputs(const Engine& e);

/// Reads repeated --input name=file.npy options.
Result<std::map<std::string, Tensor>> load_input_files(const std::vector<std::string>& specs);

/// The dims of each tensor.
ShapeMap shapes_of(const std::map<std::string, Tensor>& tensors);

/// Picks the run shape of each input (explicit shape, else the profile's opt, else the
/// static shape) and the profile (explicit >= 0, else the first that holds the shapes).
struct RunSetup {
  int profile = 0;
  ShapeMap shapes;
};
Result<RunSetup> choose_run_setup(const Engine& e, const ShapeMap& given, int profile);

/// Random tensors for the inputs not in `given` (floats uniform in [-1, 1), ints in [0, 4), bools).
Result<std::map<std::string, Tensor>> make_inputs(const Engine& e, const RunSetup& setup,
                                                  std::map<std::string, Tensor> given, uint64_t seed);

/// Runs `fn`; if it takes longer than a second, prints "label..." and then "done in X s".
void with_progress(const std::string& label, const std::function<void()>& fn);

/// Seconds since `t0`.
inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// The subcommands; each returns the error that main() prints, or ok.
struct BuildCmd {
  std::string model, output;
  BuildOptions build;
};
Status run_build(const BuildCmd& c);

struct RunCmd {
  std::string model;
  std::vector<std::string> inputs, shapes;
  std::string output_dir;
  uint64_t seed = 1;
  int profile = -1;
  int print_values = 8;
  BuildOptions build;
};
Status run_run(const RunCmd& c);

struct BenchCmd {
  std::string model;
  std::vector<std::string> inputs, shapes;
  int warmup = -1;       ///< -1: 10 runs or 200 ms, whichever first
  int iterations = -1;   ///< -1: default (at least 10)
  double duration = -1;  ///< -1: default (3 s unless --iterations given)
  std::string json;
  uint64_t seed = 1;
  int profile = -1;
  // CUDA engines.
  bool cuda_graph = false;         ///< capture and replay a CUDA graph
  bool no_data_transfers = false;  ///< inputs/outputs stay in device memory
  int streams = 1;                 ///< contexts running concurrently, one stream each
  bool dump_profile = false;       ///< print time per layer
  std::string export_profile;      ///< write time per layer as JSON
  BuildOptions build;
};
Status run_bench(const BenchCmd& c);

struct InspectCmd {
  std::string model;
  bool json = false;
  bool report_only = false;  ///< ONNX models: the capability report only, no in-memory build
  BuildOptions build;
};
Status run_inspect(const InspectCmd& c);

}  // namespace kiln::cli

// Turning a model path into an Engine: engine files by magic, ONNX built in memory.
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>

#include "app.h"
#include "cli_util.h"
#include "profiles.h"
#include "progress_bar.h"

namespace kiln::cli {

void CliLogger::log(Severity severity, const std::string& message) {
  // Errors also come back as Status values, which main() prints; show both only when verbose.
  if (severity == Severity::kError && min_severity() != Severity::kVerbose) return;
  ProgressBar::clear_line();
  static const char* kTags[] = {"internal error", "error", "warning", "info", "verbose"};
  std::cerr << "kiln: " << kTags[static_cast<int>(severity)] << ": " << message << "\n";
}

bool looks_like_engine(const std::vector<uint8_t>& bytes) {
  return bytes.size() >= 4 && std::memcmp(bytes.data(), "KILN", 4) == 0;
}

void with_progress(const std::string& label, const std::function<void()>& fn) {
  std::mutex m;
  std::condition_variable cv;
  bool done = false, printed = false;
  auto t0 = std::chrono::steady_clock::now();
  std::thread watcher([&] {
    std::unique_lock<std::mutex> lock(m);
    if (cv.wait_for(lock, std::chrono::seconds(1), [&] { return done; })) return;
    std::cerr << label << "..." << std::endl;
    printed = true;
  });
  fn();
  {
    std::lock_guard<std::mutex> lock(m);
    done = true;
  }
  cv.notify_all();
  watcher.join();
  if (printed) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.2f", seconds_since(t0));
    std::cerr << label << "... done in " << buf << " s" << std::endl;
  }
}

Status parse_device(const std::string& text, DeviceType& type, int& index) {
  index = 0;
  std::string t = text;
  if (t == "cpu") {
    type = DeviceType::kCPU;
    return Status();
  }
  size_t colon = t.find(':');
  std::string kind = colon == std::string::npos ? t : t.substr(0, colon);
  std::string num = colon == std::string::npos ? "" : t.substr(colon + 1);
  if (!kind.empty() && std::isdigit(static_cast<unsigned char>(kind[0]))) {
    num = kind;
    kind = "cuda";
  }
  if (kind != "cuda" && kind != "gpu")
    return Status(ErrorCode::kInvalidArgument, "--device must be cpu, cuda, cuda:N or N, got '" + text + "'");
  type = DeviceType::kCUDA;
  if (!num.empty()) {
    if (num.find_first_not_of("0123456789") != std::string::npos || num.size() > 4)
      return Status(ErrorCode::kInvalidArgument, "--device '" + text + "': the device index must be a number");
    index = std::stoi(num);
  }
  return Status();
}

namespace {

Status apply_config(const BuildOptions& o, BuilderConfig& config) {
  if (o.fp16) config.set_flag(BuilderFlag::kFP16);
  if (o.bf16) config.set_flag(BuilderFlag::kBF16);
  if (o.int8) config.set_flag(BuilderFlag::kINT8);
  if (o.fp8) config.set_flag(BuilderFlag::kFP8);
  if (o.tf32 && o.no_tf32) return Status(ErrorCode::kInvalidArgument, "--tf32 and --no-tf32 contradict each other");
  if (o.tf32) config.set_flag(BuilderFlag::kTF32);
  if (o.no_tf32) config.clear_flag(BuilderFlag::kTF32);
  if (o.strict_types) config.set_flag(BuilderFlag::kStrictTypes);
  if (o.workspace_mib < 0) return Status(ErrorCode::kInvalidArgument, "--workspace must be >= 0 MiB");
  if (o.workspace_mib > 0)
    config.set_memory_pool_limit(MemoryPoolType::kWorkspace, static_cast<uint64_t>(o.workspace_mib * 1024.0 * 1024.0));
  if (o.opt_level < 0 || o.opt_level > 5)
    return Status(ErrorCode::kInvalidArgument, "--opt-level must be 0..5, got " + std::to_string(o.opt_level));
  config.set_optimization_level(o.opt_level);
  config.set_timing_cache_path(o.timing_cache);
  DeviceType type;
  int index = 0;
  KILN_RETURN_IF_ERROR(parse_device(o.device, type, index));
  config.set_device(type);
  config.set_device_index(index);
  auto io_dtype = [](const std::string& flag, std::string v, DataType& out) -> Status {
    if (auto colon = v.find(':'); colon != std::string::npos) v = v.substr(0, colon);  // trtexec's ":chw"
    if (v == "fp32") out = DataType::kFloat32;
    else if (v == "fp16") out = DataType::kFloat16;
    else if (v == "bf16") out = DataType::kBFloat16;
    else return Status(ErrorCode::kInvalidArgument, flag + " must be fp32, fp16 or bf16, got '" + v + "'");
    return Status();
  };
  DataType in_io, out_io;
  KILN_RETURN_IF_ERROR(io_dtype("--input-io-formats", o.input_io, in_io));
  KILN_RETURN_IF_ERROR(io_dtype("--output-io-formats", o.output_io, out_io));
  config.set_io_dtypes(in_io, out_io);
  for (const auto& kv : o.metadata) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return Status(ErrorCode::kInvalidArgument, "--metadata '" + kv + "' should be key=value");
    config.set_metadata(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return Status();
}

}  // namespace

Result<std::vector<uint8_t>> build_from_onnx(const std::string& path, const BuildOptions& o, const ShapeMap& run_shapes,
                                             Logger& logger, BuildInfo* info) {
  auto t0 = std::chrono::steady_clock::now();
  Builder builder(logger);
  std::unique_ptr<NetworkDefinition> net = builder.create_network();
  OnnxParser parser(*net, logger);
  if (!parser.parse_from_file(path)) {
    std::string msg = "cannot parse ONNX model '" + path + "'";
    int n = parser.num_errors();
    for (int i = 0; i < n && i < 10; ++i) msg += "\n  " + parser.error(i).to_string();
    if (n > 10) msg += "\n  ... and " + std::to_string(n - 10) + " more";
    if (n == 0) msg += " (no details given)";
    return Status(ErrorCode::kInvalidModel, msg);
  }
  if (!net->errors().empty()) return Status(ErrorCode::kInvalidModel, "'" + path + "': " + join(net->errors(), "; "));
  std::unique_ptr<BuilderConfig> config = builder.create_builder_config();
  KILN_RETURN_IF_ERROR(apply_config(o, *config));
  KILN_ASSIGN_OR_RETURN(auto profiles, make_profiles(*net, o, run_shapes, logger));
  for (const auto& p : profiles) config->add_optimization_profile(p);

  Result<std::vector<uint8_t>> built = Status(ErrorCode::kInternal, "build did not run");
  if (!o.no_progress && ProgressBar::stderr_is_tty()) {
    ProgressBar bar;
    config->set_progress_monitor(&bar);
    built = builder.build_serialized_network(*net, *config);
  } else {
    with_progress("kiln: building engine", [&] { built = builder.build_serialized_network(*net, *config); });
  }
  if (!built.ok()) return built.status().with_context("building '" + path + "'");
  if (info) {
    info->seconds = seconds_since(t0);
    info->engine_bytes = built.value().size();
  }
  return built;
}

Result<LoadedEngine> load_engine(const std::string& path, const BuildOptions& o, const ShapeMap& run_shapes,
                                 Logger& logger) {
  KILN_ASSIGN_OR_RETURN(auto bytes, read_file(path));
  LoadedEngine out;
  out.file_bytes = bytes.size();
  if (!looks_like_engine(bytes)) {
    KILN_ASSIGN_OR_RETURN(bytes, build_from_onnx(path, o, run_shapes, logger, &out.build));
    out.built = true;
  }
  Runtime runtime(logger);
  DeviceType type;
  int index = 0;
  KILN_RETURN_IF_ERROR(parse_device(o.device, type, index));
  runtime.set_device_index(index);
  auto engine = runtime.deserialize(bytes.data(), bytes.size());
  if (!engine.ok())
    return engine.status().with_context(out.built ? "loading the engine built from '" + path + "'"
                                                  : "loading engine '" + path + "'");
  out.engine = std::move(engine).value();
  return out;
}

std::vector<std::string> engine_inputs(const Engine& e) {
  std::vector<std::string> v;
  for (int i = 0; i < e.num_io_tensors(); ++i)
    if (e.get_tensor_mode(e.get_tensor_name(i)) == TensorIOMode::kInput) v.push_back(e.get_tensor_name(i));
  return v;
}

std::vector<std::string> engine_outputs(const Engine& e) {
  std::vector<std::string> v;
  for (int i = 0; i < e.num_io_tensors(); ++i)
    if (e.get_tensor_mode(e.get_tensor_name(i)) == TensorIOMode::kOutput) v.push_back(e.get_tensor_name(i));
  return v;
}

}  // namespace kiln::cli

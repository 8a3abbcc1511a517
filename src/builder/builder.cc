#include <chrono>
#include <optional>
#include <set>

#include "backends/cuda/api.h"
#include "builder/build_progress.h"
#include "builder/network_impl.h"
#include "ir/shape_only.h"
#include "kiln/kiln.h"
#include "passes/pass.h"
#include "plan/engine_file.h"
#include "plan/memory_plan.h"
#include "runtime/shape_eval.h"
#include "select/select_kernels.h"
#include "select/tactics.h"

namespace kiln {

// ------------------------------------------------------------------ OptimizationProfile

Status OptimizationProfile::set_shape(const std::string& name, const Dims& min, const Dims& opt, const Dims& max) {
  if (min.size() != opt.size() || opt.size() != max.size())
    return Status(ErrorCode::kInvalidArgument, "profile for '" + name + "': min " + dims_to_string(min) + ", opt " +
                                                   dims_to_string(opt) + " and max " + dims_to_string(max) +
                                                   " must have the same rank");
  for (size_t i = 0; i < min.size(); ++i)
    if (min[i] < 0 || min[i] > opt[i] || opt[i] > max[i])
      return Status(ErrorCode::kInvalidArgument, "profile for '" + name + "' dim " + std::to_string(i) +
                                                     ": need 0 <= min <= opt <= max, got " + std::to_string(min[i]) +
                                                     ", " + std::to_string(opt[i]) + ", " + std::to_string(max[i]));
  ranges_[name] = Range{min, opt, max};
  return Status();
}

bool OptimizationProfile::has_shape(const std::string& name) const { return ranges_.count(name) != 0; }
Dims OptimizationProfile::get_min(const std::string& n) const { return has_shape(n) ? ranges_.at(n).min : Dims{}; }
Dims OptimizationProfile::get_opt(const std::string& n) const { return has_shape(n) ? ranges_.at(n).opt : Dims{}; }
Dims OptimizationProfile::get_max(const std::string& n) const { return has_shape(n) ? ranges_.at(n).max : Dims{}; }
std::vector<std::string> OptimizationProfile::names() const {
  std::vector<std::string> r;
  for (auto& [k, v] : ranges_) r.push_back(k);
  return r;
}

// ------------------------------------------------------------------ Builder

Builder::Builder(Logger& logger) : logger_(logger) {}
Builder::~Builder() = default;

std::unique_ptr<NetworkDefinition> Builder::create_network() { return std::make_unique<NetworkDefinition>(); }
std::unique_ptr<BuilderConfig> Builder::create_builder_config() { return std::make_unique<BuilderConfig>(); }
bool Builder::platform_has_fast_fp16() const { return false; }

namespace {

// Checks every profile against the inputs and returns them as ranges.
Result<std::vector<plan::ProfileRanges>> check_profiles(const ir::Graph& g, const BuilderConfig& config) {
  std::vector<plan::ProfileRanges> out;
  std::vector<OptimizationProfile> profiles = config.profiles();
  if (profiles.empty()) profiles.emplace_back();
  for (size_t p = 0; p < profiles.size(); ++p) {
    plan::ProfileRanges ranges;
    for (const std::string& name : profiles[p].names()) {
      bool found = false;
      for (ir::Value* in : g.inputs) found = found || in->name == name;
      if (!found)
        return Status(ErrorCode::kInvalidArgument, "optimization profile " + std::to_string(p) + " names '" + name +
                                                       "', which is not a network input");
    }
    for (ir::Value* in : g.inputs) {
      if (!in->shape)
        return Status(ErrorCode::kInvalidArgument, "input '" + in->name + "' has unknown rank; declare its shape");
      const Shape& s = *in->shape;
      if (!profiles[p].has_shape(in->name)) {
        if (!shape_is_concrete(s))
          return Status(ErrorCode::kInvalidArgument,
                        "input '" + in->name + "' has dynamic dims " + shape_to_string(s) +
                            " but optimization profile " + std::to_string(p) +
                            " gives no range (use --min-shapes/--opt-shapes/--max-shapes or --shapes)");
        continue;
      }
      std::array<Dims, 3> r{profiles[p].get_min(in->name), profiles[p].get_opt(in->name),
                            profiles[p].get_max(in->name)};
      if (r[0].size() != s.size())
        return Status(ErrorCode::kInvalidArgument, "optimization profile " + std::to_string(p) + " gives '" + in->name +
                                                       "' rank " + std::to_string(r[0].size()) +
                                                       ", the input has rank " + std::to_string(s.size()) + " " +
                                                       shape_to_string(s));
      for (size_t i = 0; i < s.size(); ++i)
        if (s[i].known() && (r[0][i] != s[i].value || r[2][i] != s[i].value))
          return Status(ErrorCode::kInvalidArgument, "optimization profile " + std::to_string(p) + " gives '" +
                                                         in->name + "' dim " + std::to_string(i) + " the range [" +
                                                         std::to_string(r[0][i]) + ", " + std::to_string(r[2][i]) +
                                                         "] but the dim is fixed at " + std::to_string(s[i].value));
      ranges[in->name] = r;
    }
    out.push_back(std::move(ranges));
  }
  return out;
}

// The input shapes the passes see: the declared shapes, with each dynamic dim that
// every profile pins to one value (min = max, the same in all) made that value, so a
// fixed-shape build folds its shape arithmetic (a mask's Expand, a Range over the
// sequence) into constants. Dims that vary stay symbolic.
std::map<std::string, Shape> pass_input_shapes(const ir::Graph& g, const std::vector<plan::ProfileRanges>& profiles) {
  std::map<std::string, Shape> out;
  for (const ir::Value* in : g.inputs) {
    Shape s = *in->shape;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i].known()) continue;
      std::optional<int64_t> pinned;
      bool fixed = !profiles.empty();
      for (const plan::ProfileRanges& r : profiles) {
        auto it = r.find(in->name);
        if (it == r.end() || it->second[0][i] != it->second[2][i] || (pinned && *pinned != it->second[0][i])) {
          fixed = false;
          break;
        }
        pinned = it->second[0][i];
      }
      if (fixed) s[i] = Dim(*pinned);
    }
    out[in->name] = s;
  }
  return out;
}

// Bytes of every activation at each profile's max dims (largest over profiles).
Result<std::map<std::string, uint64_t>> activation_sizes(const ir::Graph& g,
                                                         const std::vector<plan::ProfileRanges>& profiles) {
  std::map<std::string, uint64_t> bytes;
  for (size_t p = 0; p < profiles.size(); ++p) {
    std::map<std::string, Shape> shapes;
    for (ir::Value* in : g.inputs) {
      auto it = profiles[p].find(in->name);
      shapes[in->name] = it != profiles[p].end() ? shape_from_dims(it->second[2]) : *in->shape;
    }
    Propagation prop;
    Status s = propagate(g, shapes, prop, /*strict=*/true);
    if (!s.ok()) return s.with_context("at the max shapes of optimization profile " + std::to_string(p));
    for (auto& [v, t] : prop.types) {
      if (!t.shape) continue;
      int64_t vol = shape_volume(*t.shape);
      if (vol < 0) continue;  // data-dependent: allocated at run time
      uint64_t b = static_cast<uint64_t>(vol) * dtype_size(t.dtype);
      uint64_t& cur = bytes[v->name];
      cur = std::max(cur, b);
    }
  }
  return bytes;
}

}  // namespace

Result<std::vector<uint8_t>> Builder::build_serialized_network(const NetworkDefinition& network,
                                                               const BuilderConfig& config) {
  auto t0 = std::chrono::steady_clock::now();
  auto& impl = const_cast<NetworkDefinition&>(network).impl();
  if (!impl.errors.empty()) {
    std::string all;
    for (auto& e : impl.errors) all += "\n  " + e;
    return Status(ErrorCode::kInvalidArgument,
                  "the network has " + std::to_string(impl.errors.size()) + " error(s):" + all);
  }
  for (DataType io : {config.input_io_dtype(), config.output_io_dtype()}) {
    if (io == DataType::kFloat32) continue;
    bool fp16 = config.get_flag(BuilderFlag::kFP16), bf16 = config.get_flag(BuilderFlag::kBF16);
    DataType engine = fp16 ? DataType::kFloat16 : bf16 ? DataType::kBFloat16 : DataType::kFloat32;
    if (config.device() != DeviceType::kCUDA || io != engine)
      return Status(ErrorCode::kInvalidArgument, std::string("I/O dtype ") + dtype_name(io) +
                                                     " needs a CUDA engine built with --" +
                                                     (io == DataType::kFloat16 ? "fp16" : "bf16") +
                                                     " (16-bit I/O passes the engine's precision through)");
  }
  std::string cuda_arch, cuda_name;
  if (config.device() == DeviceType::kCUDA) {
    if (cuda::device_count() == 0)
      return Status(ErrorCode::kUnsupported, "cannot build a CUDA engine: " + cuda::no_device_reason());
    KILN_RETURN_IF_ERROR(cuda::set_device(config.device_index()));
    KILN_ASSIGN_OR_RETURN(cuda::DeviceInfo info, cuda::device_info(config.device_index()));
    cuda_arch = cuda::arch_name(info.cc_major, info.cc_minor);
    cuda_name = info.name;
  }
  if (impl.graph.outputs.empty())
    return Status(ErrorCode::kInvalidArgument, "the network has no outputs (mark_output)");
  std::shared_ptr<ir::Graph> g(impl.graph.clone());
  KILN_RETURN_IF_ERROR(g->topo_sort());
  KILN_RETURN_IF_ERROR(ir::verify(*g).with_context("network"));
  KILN_ASSIGN_OR_RETURN(auto profiles, check_profiles(*g, config));

  passes::PassContext ctx;
  ctx.config = &config;
  ctx.logger = &logger_;
  ctx.input_shapes = pass_input_shapes(*g, profiles);
  auto progress = [&](const std::string& phase) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    logger_.emit(Logger::Severity::kInfo, "build: " + phase + " (" + std::to_string(s).substr(0, 5) + " s)");
  };
  // Progress: kPhaseBuild steps once per phase below (see builder/build_progress.h).
  ProgressMonitor* monitor = config.get_progress_monitor();
  BuildPhase build_phase(monitor, kPhaseBuild, nullptr, kBuildPhaseSteps);
  {
    BuildPhase phase(monitor, kPhasePasses, kPhaseBuild, passes::pipeline_size());
    ctx.progress = &phase;
    KILN_RETURN_IF_ERROR(passes::run_pipeline(*g, ctx));
    ctx.progress = nullptr;
  }
  KILN_RETURN_IF_ERROR(build_phase.step());
  progress("optimized graph: " + std::to_string(g->nodes().size()) + " layers");
  {
    BuildPhase phase(monitor, kPhaseKernels, kPhaseBuild, 1);
    KILN_RETURN_IF_ERROR(select::select_kernels(*g, config, logger_));
    KILN_RETURN_IF_ERROR(phase.step());
  }
  KILN_RETURN_IF_ERROR(build_phase.step());
  KILN_RETURN_IF_ERROR(select::select_tactics(*g, profiles.front(), config, logger_, ctx.stats));
  KILN_RETURN_IF_ERROR(build_phase.step());  // kPhaseTactics is reported inside select_tactics
  plan::EngineModel m;
  {
    BuildPhase phase(monitor, kPhaseMemory, kPhaseBuild, 1);
    KILN_ASSIGN_OR_RETURN(auto sizes, activation_sizes(*g, profiles));
    if (config.device() == DeviceType::kCUDA) {  // the CUDA executor never runs these: no memory
      for (const ir::Node* n : ir::shape_only_nodes(*g))
        for (const ir::Value* o : n->outputs)
          if (o) sizes.erase(o->name);
    }
    m.memory = plan::plan_memory(*g, sizes);
    KILN_RETURN_IF_ERROR(phase.step());
  }
  KILN_RETURN_IF_ERROR(build_phase.step());
  progress("memory plan: arena " + std::to_string(m.memory.arena_bytes) + " bytes (" +
           std::to_string(m.memory.naive_bytes) + " without reuse)");
  if (config.get_memory_pool_limit(MemoryPoolType::kWorkspace) &&
      m.memory.arena_bytes > config.get_memory_pool_limit(MemoryPoolType::kWorkspace))
    logger_.emit(Logger::Severity::kWarning,
                 "activation arena (" + std::to_string(m.memory.arena_bytes) + " bytes) exceeds the workspace limit");
  m.graph = g;
  m.profiles = std::move(profiles);
  m.metadata = config.metadata();
  if (config.device() == DeviceType::kCUDA) {
    m.device = "cuda";
    m.device_arch = cuda_arch;
    m.options["device_name"] = cuda_name;
    m.options["libraries"] = cuda::library_versions();
    if (!config.get_flag(BuilderFlag::kTF32)) m.options["no_tf32"] = "1";
  } else {
    m.device = "cpu";
    m.device_arch = plan::host_arch();
  }
  m.kiln_version = version_string();
  m.build_stats = ctx.stats;
  m.build_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BuildPhase phase(monitor, kPhaseSerialize, kPhaseBuild, 1);
  std::vector<uint8_t> bytes = plan::serialize_engine(m);
  KILN_RETURN_IF_ERROR(phase.step());
  KILN_RETURN_IF_ERROR(build_phase.step());
  return bytes;
}

}  // namespace kiln

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>

#include "backends/cuda/api.h"
#include "backends/cuda/tactic_sink.h"
#include "kiln/kiln.h"
#include "ops/op.h"
#include "runtime/cuda_executor.h"
#include "runtime/engine_data.h"
#include "runtime/executor.h"
#include "runtime/shape_eval.h"
#include "select/tactics.h"

namespace kiln {

using nlohmann::json;

namespace {

json dims_json(const Dims& d) { return json(d); }

std::string io_mode_name(TensorIOMode m) {
  return m == TensorIOMode::kInput ? "input" : m == TensorIOMode::kOutput ? "output" : "none";
}

json build_inspect_json(const EngineData& e) {
  const plan::EngineModel& m = e.model;
  json io = json::array();
  for (auto& t : e.io) {
    json names = json::array();
    for (auto& d : t.shape) names.push_back(d.known() ? "" : d.name);
    io.push_back(json{{"name", t.name},
                      {"mode", io_mode_name(t.mode)},
                      {"dtype", dtype_name(t.dtype)},
                      {"shape", dims_json(shape_to_dims(t.shape))},
                      {"dim_names", names}});
  }
  json profiles = json::array();
  for (auto& p : m.profiles) {
    json jp = json::object();
    for (auto& [name, r] : p) jp[name] = json{{"min", r[0]}, {"opt", r[1]}, {"max", r[2]}};
    profiles.push_back(jp);
  }
  json layers = json::array();
  uint64_t kept_plans = 0;
  for (auto& n : m.graph->nodes()) {
    json ins = json::array(), outs = json::array();
    const int64_t tactic = n->attrs.get_int(ops::kTacticAttr, -1);
    // What the build compiled for this layer and the engine carries (cuda::kKernelStateAttr).
    const ir::Attribute* kept = n->attrs.find(cuda::kKernelStateAttr);
    const uint64_t kept_bytes = kept && kept->kind == ir::Attribute::Kind::kString ? kept->s.size() : 0;
    kept_plans += kept_bytes;
    for (auto* v : n->inputs) ins.push_back(v ? v->name : "");
    for (auto* v : n->outputs) outs.push_back(v ? v->name : "");
    layers.push_back(json{{"name", n->name},
                          {"op", n->op_type},
                          {"domain", n->domain},
                          {"kernel", n->kernel.empty() ? "ref" : n->kernel},
                          {"tactic", tactic},
                          {"tactic_desc", select::describe_tactic(n->kernel, tactic)},
                          {"kept_plan_bytes", kept_bytes},
                          {"precision", dtype_name(n->precision)},
                          {"device", n->device == ir::Device::kCUDA ? "cuda" : "cpu"},
                          {"inputs", ins},
                          {"outputs", outs}});
  }
  uint64_t weights = 0;
  for (auto& [name, v] : m.graph->values())
    if (v->initializer) weights += v->initializer->nbytes();
  return json{{"header",
               {{"format_version", plan::kFormatVersion},
                {"kiln_version", m.kiln_version},
                {"device", m.device},
                {"arch", m.device_arch}}},
              {"io", io},
              {"profiles", profiles},
              {"layers", layers},
              {"memory",
               {{"weights_bytes", weights},
                {"activation_bytes", m.memory.arena_bytes},
                {"activation_bytes_without_reuse", m.memory.naive_bytes},
                {"kept_plan_bytes", kept_plans}}},
              {"metadata", m.metadata},
              {"build", {{"seconds", m.build_seconds}, {"stats", m.build_stats}}}};
}

}  // namespace

std::shared_ptr<EngineData> make_engine_data(plan::EngineModel model) {
  auto e = std::make_shared<EngineData>();
  e->model = std::move(model);
  for (ir::Value* v : e->model.graph->inputs)
    e->io.push_back(IoTensor{v->name, TensorIOMode::kInput, v->dtype, v->shape.value_or(Shape{}), v});
  for (ir::Value* v : e->model.graph->outputs)
    e->io.push_back(IoTensor{v->name, TensorIOMode::kOutput, v->dtype, v->shape.value_or(Shape{}), v});
  if (e->model.profiles.empty()) e->model.profiles.emplace_back();
  e->json_text = build_inspect_json(*e).dump(2);
  return e;
}

// ------------------------------------------------------------------ Engine

Engine::Engine(std::shared_ptr<EngineData> data) : data_(std::move(data)) {}
Engine::~Engine() = default;

int Engine::num_io_tensors() const { return static_cast<int>(data_->io.size()); }

std::string Engine::get_tensor_name(int i) const {
  return i >= 0 && i < num_io_tensors() ? data_->io[static_cast<size_t>(i)].name : "";
}

TensorIOMode Engine::get_tensor_mode(const std::string& name) const {
  auto* t = data_->find_io(name);
  return t ? t->mode : TensorIOMode::kNone;
}

DataType Engine::get_tensor_dtype(const std::string& name) const {
  auto* t = data_->find_io(name);
  return t ? t->dtype : DataType::kUndefined;
}

Dims Engine::get_tensor_shape(const std::string& name) const {
  auto* t = data_->find_io(name);
  return t ? shape_to_dims(t->shape) : Dims{};
}

std::vector<std::string> Engine::get_tensor_dim_names(const std::string& name) const {
  std::vector<std::string> r;
  if (auto* t = data_->find_io(name))
    for (auto& d : t->shape) r.push_back(d.known() ? "" : d.name);
  return r;
}

int Engine::num_optimization_profiles() const { return static_cast<int>(data_->model.profiles.size()); }

std::vector<Dims> Engine::get_tensor_profile_shape(const std::string& name, int profile) const {
  if (profile < 0 || profile >= num_optimization_profiles()) return {};
  auto& p = data_->model.profiles[static_cast<size_t>(profile)];
  auto it = p.find(name);
  if (it == p.end()) {
    // A static input: its fixed dims are its whole range.
    auto* t = data_->find_io(name);
    if (!t || t->mode != TensorIOMode::kInput || !shape_is_concrete(t->shape)) return {};
    Dims d = shape_to_dims(t->shape);
    return {d, d, d};
  }
  return {it->second[0], it->second[1], it->second[2]};
}

uint64_t Engine::activation_bytes() const { return data_->model.memory.arena_bytes; }

uint64_t Engine::weight_bytes() const {
  uint64_t w = 0;
  for (auto& [name, v] : data_->model.graph->values())
    if (v->initializer) w += v->initializer->nbytes();
  return w;
}

int Engine::num_layers() const { return static_cast<int>(data_->model.graph->nodes().size()); }
std::string Engine::inspect_json() const { return data_->json_text; }
std::string Engine::device() const { return data_->model.device; }
const std::map<std::string, std::string>& Engine::metadata() const { return data_->model.metadata; }

std::unique_ptr<ExecutionContext> Engine::create_execution_context() {
  return std::make_unique<ExecutionContext>(this);
}

// ------------------------------------------------------------------ ExecutionContext

struct ExecutionContext::State {
  std::map<std::string, Dims> input_dims;  // set_input_shape
  std::map<std::string, void*> addresses;  // set_tensor_address
  std::shared_ptr<uint8_t[]> arena;
  uint64_t arena_bytes = 0;
  bool shapes_dirty = true;
  std::map<std::string, Dims> output_dims;  // from propagation
  std::map<std::string, Tensor> last_outputs;
  int num_threads = 1;
  // CUDA engines.
  std::unique_ptr<CudaExecutor> cuda;
  bool use_cuda_graph = false, timing = false, profiling = false;
  RunTiming last_timing;
  std::vector<std::pair<std::string, float>> cpu_layer_times;
};

ExecutionContext::ExecutionContext(const Engine* engine) : engine_(engine), state_(std::make_unique<State>()) {
  unsigned hc = std::thread::hardware_concurrency();
  state_->num_threads = hc == 0 ? 1 : static_cast<int>(hc);
  // Static inputs start with their fixed dims.
  for (auto& t : engine_->data()->io)
    if (t.mode == TensorIOMode::kInput && shape_is_concrete(t.shape))
      state_->input_dims[t.name] = shape_to_dims(t.shape);
}

ExecutionContext::~ExecutionContext() = default;

Status ExecutionContext::set_optimization_profile(int index) {
  if (index < 0 || index >= engine_->num_optimization_profiles())
    return Status(ErrorCode::kOutOfRange, "optimization profile " + std::to_string(index) +
                                              " does not exist; the engine has " +
                                              std::to_string(engine_->num_optimization_profiles()));
  profile_ = index;
  state_->shapes_dirty = true;
  return Status();
}

Status ExecutionContext::set_input_shape(const std::string& name, const Dims& dims) {
  const IoTensor* t = engine_->data()->find_io(name);
  if (!t || t->mode != TensorIOMode::kInput) {
    std::string known;
    for (auto& io : engine_->data()->io)
      if (io.mode == TensorIOMode::kInput) known += (known.empty() ? "" : ", ") + io.name;
    return Status(ErrorCode::kNotFound, "'" + name + "' is not an input of this engine (inputs: " + known + ")");
  }
  if (dims.size() != t->shape.size())
    return Status(ErrorCode::kInvalidArgument, "input '" + name + "' has rank " + std::to_string(t->shape.size()) +
                                                   ", got dims " + dims_to_string(dims) + " of rank " +
                                                   std::to_string(dims.size()));
  auto range = engine_->get_tensor_profile_shape(name, profile_);
  for (size_t i = 0; i < dims.size(); ++i) {
    const Dim& decl = t->shape[i];
    std::string dim_label = "dim " + std::to_string(i) + (decl.name.empty() ? "" : " (" + decl.name + ")");
    if (dims[i] < 0)
      return Status(ErrorCode::kInvalidArgument,
                    "input '" + name + "' " + dim_label + " must be concrete, got " + std::to_string(dims[i]));
    if (decl.known() && decl.value != dims[i])
      return Status(ErrorCode::kOutOfRange, "input '" + name + "' " + dim_label + " = " + std::to_string(dims[i]) +
                                                " but the engine was built for " + std::to_string(decl.value));
    if (!range.empty()) {
      int64_t lo = range[0][i], hi = range[2][i];
      if (dims[i] < lo || dims[i] > hi)
        return Status(ErrorCode::kOutOfRange, "input '" + name + "' " + dim_label + " = " + std::to_string(dims[i]) +
                                                  " is outside optimization profile " + std::to_string(profile_) +
                                                  " range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    } else if (!decl.known()) {
      return Status(ErrorCode::kOutOfRange, "input '" + name + "' has a dynamic " + dim_label +
                                                " but optimization profile " + std::to_string(profile_) +
                                                " gives it no range");
    }
  }
  state_->input_dims[name] = dims;
  state_->shapes_dirty = true;
  return Status();
}

Dims ExecutionContext::get_tensor_shape(const std::string& name) const {
  const IoTensor* t = engine_->data()->find_io(name);
  if (!t) return {};
  if (t->mode == TensorIOMode::kInput) {
    auto it = state_->input_dims.find(name);
    return it != state_->input_dims.end() ? it->second : shape_to_dims(t->shape);
  }
  if (state_->shapes_dirty) {
    state_->output_dims.clear();
    std::map<std::string, Shape> shapes;
    for (auto& [n, d] : state_->input_dims) shapes[n] = shape_from_dims(d);
    Propagation p;
    if (propagate(*engine_->data()->model.graph, shapes, p, /*strict=*/false).ok()) {
      for (auto& io : engine_->data()->io) {
        if (io.mode != TensorIOMode::kOutput) continue;
        auto it = p.types.find(io.value);
        if (it != p.types.end() && it->second.shape) state_->output_dims[io.name] = shape_to_dims(*it->second.shape);
      }
    }
    state_->shapes_dirty = false;
  }
  auto it = state_->output_dims.find(name);
  if (it != state_->output_dims.end()) return it->second;
  return shape_to_dims(t->shape);
}

Status ExecutionContext::set_tensor_address(const std::string& name, void* data) {
  if (!engine_->data()->find_io(name))
    return Status(ErrorCode::kNotFound, "'" + name + "' is not an input or output of this engine");
  state_->addresses[name] = data;
  return Status();
}

Status ExecutionContext::enqueue(void* stream) { return run(stream, /*sync=*/false); }
Status ExecutionContext::execute() { return run(nullptr, /*sync=*/true); }

void ExecutionContext::set_use_cuda_graph(bool on) {
  state_->use_cuda_graph = on;
  if (state_->cuda) state_->cuda->set_use_cuda_graph(on);
}
void ExecutionContext::set_timing(bool on) { state_->timing = on; }
RunTiming ExecutionContext::last_timing() const { return state_->last_timing; }
void ExecutionContext::set_profiling(bool on) {
  state_->profiling = on;
  if (state_->cuda) state_->cuda->set_profiling(on);
}
std::vector<std::pair<std::string, float>> ExecutionContext::layer_times() const {
  return state_->cuda ? state_->cuda->layer_times() : state_->cpu_layer_times;
}
int ExecutionContext::last_fallback_count() const { return state_->cuda ? state_->cuda->last_fallback_count() : 0; }

Status ExecutionContext::run_cuda(void* stream, bool sync) {
  const EngineData& e = *engine_->data();
  if (!state_->cuda) {
    KILN_ASSIGN_OR_RETURN(state_->cuda, CudaExecutor::create(e, e.cuda_weights));
    state_->cuda->set_use_cuda_graph(state_->use_cuda_graph);
    state_->cuda->set_profiling(state_->profiling);
  }
  for (auto& t : e.io)
    if (t.mode == TensorIOMode::kInput && !state_->input_dims.count(t.name))
      return Status(ErrorCode::kInvalidArgument, "input '" + t.name + "' has dynamic dims " + shape_to_string(t.shape) +
                                                     "; call set_input_shape first");
  EnqueueTiming timing;
  KILN_RETURN_IF_ERROR(
      state_->cuda->enqueue(state_->input_dims, state_->addresses, stream, sync, state_->timing ? &timing : nullptr));
  if (state_->timing) state_->last_timing = RunTiming{timing.h2d_ms, timing.compute_ms, timing.d2h_ms};
  for (auto& [name, d] : state_->cuda->output_dims()) state_->output_dims[name] = d;
  return Status();
}

Status ExecutionContext::run(void* stream, bool sync) {
  if (engine_->data()->model.device == "cuda") return run_cuda(stream, sync);
  const EngineData& e = *engine_->data();
  std::map<std::string, Tensor> inputs;
  for (auto& t : e.io) {
    if (t.mode != TensorIOMode::kInput) continue;
    auto d = state_->input_dims.find(t.name);
    if (d == state_->input_dims.end())
      return Status(ErrorCode::kInvalidArgument, "input '" + t.name + "' has dynamic dims " + shape_to_string(t.shape) +
                                                     "; call set_input_shape first");
    auto a = state_->addresses.find(t.name);
    if (a == state_->addresses.end() || !a->second)
      return Status(ErrorCode::kNotFound, "input '" + t.name + "' has no buffer bound (set_tensor_address)");
    inputs[t.name] = Tensor::view(t.dtype, d->second, a->second);
  }
  if (state_->arena_bytes < e.model.memory.arena_bytes || !state_->arena) {
    try {
      state_->arena = std::shared_ptr<uint8_t[]>(new (std::align_val_t(64)) uint8_t[e.model.memory.arena_bytes + 64],
                                                 [](uint8_t* p) { operator delete[](p, std::align_val_t(64)); });
    } catch (const std::bad_alloc&) {
      return Status(ErrorCode::kOutOfMemory,
                    "cannot allocate the " + std::to_string(e.model.memory.arena_bytes) + "-byte activation arena");
    }
    state_->arena_bytes = e.model.memory.arena_bytes;
  }
  std::map<std::string, Tensor> outputs;
  try {
    const ir::Graph& g = *e.model.graph;
    std::vector<Tensor> ins, outs;
    for (ir::Value* v : g.inputs) ins.push_back(inputs.at(v->name));
    ExecOptions opts;
    opts.arena = state_->arena.get();
    opts.memory = &e.model.memory;
    opts.num_threads = state_->num_threads;
    if (state_->profiling) {
      state_->cpu_layer_times.clear();
      opts.layer_times = &state_->cpu_layer_times;
    }
    KILN_RETURN_IF_ERROR(execute_graph(g, ins, nullptr, opts, outs));
    for (size_t i = 0; i < g.outputs.size(); ++i) outputs[g.outputs[i]->name] = std::move(outs[i]);
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::kOutOfMemory, "out of host memory while executing");
  }
  for (auto& t : e.io) {
    if (t.mode != TensorIOMode::kOutput) continue;
    Tensor& out = outputs[t.name];
    auto a = state_->addresses.find(t.name);
    if (a != state_->addresses.end() && a->second) {
      Dims expect = get_tensor_shape(t.name);
      if (dims_volume(expect) >= 0 && dims_volume(expect) != out.numel())
        return Status(ErrorCode::kInternal, "output '" + t.name + "' has dims " + dims_to_string(out.dims()) +
                                                " but get_tensor_shape said " + dims_to_string(expect));
      std::memcpy(a->second, out.data(), out.nbytes());
    }
    state_->output_dims[t.name] = out.dims();
  }
  state_->last_outputs = std::move(outputs);
  return Status();
}

Result<std::map<std::string, Tensor>> ExecutionContext::infer(const std::map<std::string, Tensor>& inputs) {
  const EngineData& e = *engine_->data();
  for (auto& [name, t] : inputs)
    if (!e.find_io(name) || e.find_io(name)->mode != TensorIOMode::kInput)
      return Status(ErrorCode::kNotFound, "'" + name + "' is not an input of this engine");
  for (auto& io : e.io) {
    if (io.mode != TensorIOMode::kInput) continue;
    auto it = inputs.find(io.name);
    if (it == inputs.end()) return Status(ErrorCode::kNotFound, "missing input '" + io.name + "'");
    if (it->second.dtype() != io.dtype)
      return Status(ErrorCode::kInvalidArgument, "input '" + io.name + "' expects " + dtype_name(io.dtype) + ", got " +
                                                     dtype_name(it->second.dtype()));
    KILN_RETURN_IF_ERROR(set_input_shape(io.name, it->second.dims()));
    KILN_RETURN_IF_ERROR(set_tensor_address(io.name, const_cast<void*>(it->second.data())));
  }
  for (auto& io : e.io)
    if (io.mode == TensorIOMode::kOutput) state_->addresses.erase(io.name);
  if (e.model.device == "cuda") {
    KILN_RETURN_IF_ERROR(execute());
    std::map<std::string, Tensor> result;
    for (auto& io : e.io) {
      if (io.mode != TensorIOMode::kOutput) continue;
      KILN_ASSIGN_OR_RETURN(result[io.name], state_->cuda->output_to_host(io.name));
    }
    return result;
  }
  KILN_RETURN_IF_ERROR(execute());
  std::map<std::string, Tensor> result;
  // Outputs may view the arena or a graph input: copy so the caller owns them.
  for (auto& [name, t] : state_->last_outputs) result[name] = t.clone();
  state_->last_outputs.clear();
  return result;
}

// ------------------------------------------------------------------ Runtime

Result<std::unique_ptr<Engine>> Runtime::deserialize(const void* data, size_t size) {
  KILN_ASSIGN_OR_RETURN(plan::EngineModel m, plan::deserialize_engine(static_cast<const uint8_t*>(data), size));
  if (m.device == "cuda") return deserialize_cuda(std::move(m));
  if (m.device != "cpu")
    return Status(ErrorCode::kDeviceMismatch,
                  "engine was built for device '" + m.device + "' (" + m.device_arch + "), which this kiln cannot run");
  if (m.device_arch != plan::host_arch())
    return Status(ErrorCode::kDeviceMismatch,
                  "engine was built for a " + m.device_arch + " CPU, this machine is " + plan::host_arch());
  for (auto& n : m.graph->nodes()) {
    const ops::OpDef* def = ops::OpRegistry::global().find(n->domain, n->op_type);
    if (!def)
      return Status(ErrorCode::kUnsupported, "engine node " + n->describe() + " uses an operator this kiln lacks");
    bool known = n->kernel.empty() || n->kernel == "ref";
    for (auto& k : def->fast) known = known || k.name == n->kernel;
    if (!known)
      return Status(ErrorCode::kUnsupported, "engine node " + n->describe() + " uses kernel '" + n->kernel +
                                                 "' which this kiln build does not have");
  }
  logger_.emit(Logger::Severity::kInfo, "deserialized engine: " + std::to_string(m.graph->nodes().size()) + " layers");
  return std::make_unique<Engine>(make_engine_data(std::move(m)));
}

Result<std::unique_ptr<Engine>> Runtime::deserialize_cuda(plan::EngineModel m) {
  if (cuda::device_count() == 0)
    return Status(ErrorCode::kDeviceMismatch, "engine was built for CUDA (" + m.device_arch +
                                                  ") but no CUDA device is usable: " + cuda::no_device_reason());
  for (auto& n : m.graph->nodes()) {
    const ops::OpDef* def = ops::OpRegistry::global().find(n->domain, n->op_type);
    if (!def)
      return Status(ErrorCode::kUnsupported, "engine node " + n->describe() + " uses an operator this kiln lacks");
    bool known = n->kernel.empty() || n->kernel == "ref";
    for (auto& k : n->device == ir::Device::kCUDA ? def->cuda : def->fast) known = known || k.name == n->kernel;
    if (!known)
      return Status(ErrorCode::kUnsupported, "engine node " + n->describe() + " uses kernel '" + n->kernel +
                                                 "' which this kiln build does not have");
  }
  auto data = make_engine_data(std::move(m));
  KILN_ASSIGN_OR_RETURN(data->cuda_weights, upload_weights(*data, device_index_));
  logger_.emit(Logger::Severity::kInfo,
               "deserialized CUDA engine: " + std::to_string(data->model.graph->nodes().size()) + " layers on device " +
                   std::to_string(device_index_));
  return std::make_unique<Engine>(std::move(data));
}

Result<std::unique_ptr<Engine>> Runtime::deserialize_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status(ErrorCode::kIo, "cannot open engine file '" + path + "'");
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto r = deserialize(bytes.data(), bytes.size());
  if (!r.ok()) return r.status().with_context("engine file '" + path + "'");
  return r;
}

}  // namespace kiln

#include "runtime/cuda_executor.h"

#include "ir/shape_only.h"

#include <algorithm>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <unordered_map>

#include "ops/op.h"
#include "runtime/executor.h"
#include "runtime/shape_eval.h"

namespace kiln {

namespace {
constexpr size_t kAlign = 256;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::string dims_key(const std::map<std::string, Dims>& d) {
  std::string k;
  for (auto& [name, dims] : d) k += name + ":" + dims_to_string(dims) + ";";
  return k;
}
}  // namespace

Result<std::shared_ptr<CudaWeights>> upload_weights(const EngineData& e, int device) {
  KILN_RETURN_IF_ERROR(cuda::set_device(device));
  KILN_ASSIGN_OR_RETURN(cuda::DeviceInfo info, cuda::device_info(device));
  std::string arch = cuda::arch_name(info.cc_major, info.cc_minor);
  if (arch != e.model.device_arch)
    return Status(ErrorCode::kDeviceMismatch, "engine was built for compute capability " + e.model.device_arch +
                                                  " but CUDA device " + std::to_string(device) + " (" + info.name +
                                                  ") is " + arch + ": rebuild the engine on this GPU");
  auto w = std::make_shared<CudaWeights>();
  w->device = device;
  size_t total = 0;
  std::vector<const ir::Value*> values;
  for (auto& [name, v] : e.model.graph->values())
    if (v->initializer) {
      values.push_back(v.get());
      total += align_up(v->initializer->nbytes());
    }
  KILN_ASSIGN_OR_RETURN(w->buffer, cuda::device_alloc(total, "the engine weights"));
  size_t off = 0;
  for (const ir::Value* v : values) {
    auto* p = static_cast<uint8_t*>(w->buffer.get()) + off;
    KILN_RETURN_IF_ERROR(
        cuda::copy_async(p, v->initializer->data(), v->initializer->nbytes(), cuda::CopyKind::kHostToDevice, nullptr));
    w->address[v] = p;
    off += align_up(v->initializer->nbytes());
  }
  KILN_RETURN_IF_ERROR(cuda::stream_synchronize(nullptr));
  return w;
}

struct Step {
  const ir::Node* node = nullptr;
  ops::KernelFn fn = nullptr;  // CUDA kernel; null: CPU fallback
  bool dynamic = false;        // some input/output dims are known only at run time
  std::vector<Tensor> ins, outs;
  std::vector<const Tensor*> host_values;
  bool touches_io = false;  // reads a graph input or output, or writes a graph output
  // Built once per plan for the common case (static dims, no direct bindings):
  // launching is then one call with no allocation.
  std::unique_ptr<ops::KernelContext> ctx;
};

struct CudaExecutor::Plan {
  Propagation prop;
  std::vector<Step> steps;
  std::unordered_map<const ir::Value*, Tensor> dev;  // device view of every value with known dims
  std::vector<cuda::DeviceBuffer> owned;             // I/O staging, uploaded constants, unplanned values
  bool capturable = true;
  int runs = 0;
  int capture_failures = 0;  // captures invalidated (e.g. by another thread's lazy setup); 3 = stop trying
  // The caller's device buffers the graph reads and writes in place (no staging copies);
  // a call binding others recaptures, and after kMaxRebinds the graph stages through
  // its own buffers instead (callers that rotate buffers).
  Bindings graph_bindings;
  int rebinds = 0;
  std::set<const ir::Value*> fallback_reads;  // read by a CPU fallback step
  std::set<const ir::Value*> device_written;  // written by a CUDA kernel with planned dims
  cuda::Graph graph;
};

Result<std::unique_ptr<CudaExecutor>> CudaExecutor::create(const EngineData& e, std::shared_ptr<CudaWeights> w) {
  std::unique_ptr<CudaExecutor> x(new CudaExecutor());
  x->engine_ = &e;
  x->weights_ = std::move(w);
  KILN_RETURN_IF_ERROR(cuda::set_device(x->weights_->device));
  {
    cuda::ExclusiveCapture no_capture;
    KILN_ASSIGN_OR_RETURN(x->handles_,
                          cuda::Handles::create(x->weights_->device, cuda::workspace_bytes(x->weights_->device)));
    KILN_RETURN_IF_ERROR(cuda::stream_create(&x->own_stream_));
    KILN_ASSIGN_OR_RETURN(x->arena_, cuda::device_alloc(e.model.memory.arena_bytes, "the activation arena"));
  }
  const ir::Graph& g = *e.model.graph;
  x->shape_only_ = ir::shape_only_nodes(g);
  for (auto& n : g.nodes()) {
    const ops::OpDef* def = ops::OpRegistry::global().find(n->domain, n->op_type);
    if (!def) continue;
    for (int i : def->value_inputs) {
      ir::Value* v = n->input(static_cast<size_t>(i));
      if (v && std::count(g.inputs.begin(), g.inputs.end(), v)) x->value_inputs_.insert(v);
    }
  }
  return x;
}

CudaExecutor::~CudaExecutor() {
  cuda::ExclusiveCapture no_capture;
  plans_.clear();
  rt_outputs_.clear();
  handles_.reset();
  arena_ = cuda::DeviceBuffer();
  cuda::stream_destroy(own_stream_);
}

// cudaPointerGetAttributes once per address (a few hundred ns each, every run, before the
// graph launch). A device allocation's address range stays the driver's while the process
// runs, so an address seen as device memory is not later pageable host memory; a pinned
// host buffer that reuses it is read in place through unified addressing.
bool CudaExecutor::is_device_pointer(const void* p) {
  auto it = pointer_kinds_.find(p);
  if (it != pointer_kinds_.end()) return it->second;
  if (pointer_kinds_.size() >= 256) pointer_kinds_.clear();  // callers that rotate many buffers
  const bool device = cuda::is_device_pointer(p);
  pointer_kinds_.emplace(p, device);
  return device;
}

Result<CudaExecutor::Plan*> CudaExecutor::plan_for(const std::map<std::string, Dims>& input_dims,
                                                   const std::map<std::string, Tensor>& values) {
  // The last call's plan again when its dims are (no shape-tensor values): no key built.
  if (values.empty() && looked_up_ && looked_up_dims_ == input_dims) return looked_up_;
  auto remember = [&](Plan* p) {
    looked_up_ = values.empty() ? p : nullptr;
    looked_up_dims_ = input_dims;
    return p;
  };
  std::string key = dims_key(input_dims);
  for (auto& [name, t] : values) {
    key += name + "=";
    const auto* b = static_cast<const uint8_t*>(t.data());
    key.append(reinterpret_cast<const char*>(b), t.nbytes());
    key += ";";
  }
  auto found = plans_.find(key);
  if (found != plans_.end()) return remember(found->second.get());
  const ir::Graph& g = *engine_->model.graph;
  auto p = std::make_unique<Plan>();
  std::map<std::string, Shape> shapes;
  for (auto& [name, d] : input_dims) shapes[name] = shape_from_dims(d);
  KILN_RETURN_IF_ERROR(propagate(g, shapes, p->prop, /*strict=*/false, &values));

  auto own = [&](const ir::Value* v, DataType dt, const Dims& dims, const std::string& what) -> Status {
    size_t bytes = static_cast<size_t>(dims_volume(dims)) * dtype_size(dt);
    KILN_ASSIGN_OR_RETURN(cuda::DeviceBuffer b, cuda::device_alloc(bytes, what));
    p->dev[v] = Tensor::view(dt, dims, b.get());
    p->owned.push_back(std::move(b));
    return Status();
  };
  auto known_dims = [&](const ir::Value* v, Dims& dims, DataType& dt) {
    auto t = p->prop.types.find(v);
    if (t == p->prop.types.end() || !t->second.shape) return false;
    dims = shape_to_dims(*t->second.shape);
    dt = t->second.dtype;
    return dims_volume(dims) >= 0;
  };
  // A host-known value read as data by a device step is uploaded once per plan.
  auto upload = [&](const ir::Value* v, const Tensor& host) -> Status {
    KILN_RETURN_IF_ERROR(own(v, host.dtype(), host.dims(), "constant '" + v->name + "'"));
    return cuda::copy_async(p->dev[v].data(), host.data(), host.nbytes(), cuda::CopyKind::kHostToDevice, own_stream_);
  };

  for (ir::Value* in : g.inputs) {
    Dims dims;
    DataType dt;
    if (!known_dims(in, dims, dt))
      return Status(ErrorCode::kInvalidArgument, "input '" + in->name + "' has no concrete dims");
    KILN_RETURN_IF_ERROR(own(in, dt, dims, "input '" + in->name + "'"));
  }
  for (auto& [v, addr] : weights_->address)
    p->dev[v] = Tensor::view(v->initializer->dtype(), v->initializer->dims(), addr);

  for (auto& node_ptr : g.nodes()) {
    const ir::Node& node = *node_ptr;
    bool host_known = true;
    for (ir::Value* o : node.outputs)
      if (o && !p->prop.values.count(o)) host_known = false;
    if (host_known && !node.outputs.empty()) continue;  // shape arithmetic: evaluated by propagation
    if (shape_only_.count(&node)) continue;             // only its output's type is read
    Step s;
    s.node = &node;
    const ops::OpDef* def = ops::OpRegistry::global().find(node.domain, node.op_type);
    if (!def) return Status(ErrorCode::kUnsupported, "node " + node.describe() + ": operator is not supported");
    if (node.device == ir::Device::kCUDA)
      for (auto& k : def->cuda)
        if (k.name == node.kernel) s.fn = k.fn;
    if (node.device == ir::Device::kCUDA && !s.fn)
      return Status(ErrorCode::kUnsupported, "engine node " + node.describe() + " uses CUDA kernel '" + node.kernel +
                                                 "' which this kiln build does not have");
    for (ir::Value* in : node.inputs) {
      const Tensor* hv = nullptr;
      if (in) {
        auto hvit = p->prop.values.find(in);
        if (hvit != p->prop.values.end()) hv = &hvit->second;
      }
      s.host_values.push_back(hv);
      if (!in) {
        s.ins.emplace_back();
        continue;
      }
      if (!p->dev.count(in)) {
        if (hv && s.fn) KILN_RETURN_IF_ERROR(upload(in, *hv));
      }
      auto d = p->dev.find(in);
      if (d != p->dev.end())
        s.ins.push_back(d->second);
      else {
        s.ins.emplace_back();
        if (!hv) s.dynamic = true;
      }
    }
    for (ir::Value* o : node.outputs) {
      Dims dims;
      DataType dt;
      if (!o) {
        s.outs.emplace_back();
        continue;
      }
      if (!known_dims(o, dims, dt)) {
        s.dynamic = true;
        s.outs.emplace_back();
        continue;
      }
      auto slot = engine_->model.memory.slots.find(o->name);
      uint64_t need = static_cast<uint64_t>(dims_volume(dims)) * dtype_size(dt);
      if (slot != engine_->model.memory.slots.end() && need <= slot->second.size && arena_.get())
        p->dev[o] = Tensor::view(dt, dims, static_cast<uint8_t*>(arena_.get()) + slot->second.offset);
      else
        KILN_RETURN_IF_ERROR(own(o, dt, dims, "value '" + o->name + "'"));
      s.outs.push_back(p->dev[o]);
    }
    // Graph inputs and outputs may be bound straight to caller buffers, for readers too.
    for (ir::Value* in : node.inputs)
      s.touches_io = s.touches_io || (in && (std::count(g.inputs.begin(), g.inputs.end(), in) || g.is_output(in)));
    for (ir::Value* o : node.outputs) s.touches_io = s.touches_io || (o && g.is_output(o));
    if (s.fn && !s.dynamic) {
      std::vector<const Tensor*> in_ptrs;
      for (auto& t : s.ins) in_ptrs.push_back(t.is_null() ? nullptr : &t);
      std::vector<Tensor*> out_ptrs;
      for (auto& t : s.outs) out_ptrs.push_back(t.is_null() ? nullptr : &t);
      s.ctx = std::make_unique<ops::KernelContext>(node, in_ptrs, out_ptrs);
      s.ctx->set_host_values(s.host_values);
    }
    if (!s.fn || s.dynamic) p->capturable = false;
    for (ir::Value* in : node.inputs)
      if (in && !s.fn) p->fallback_reads.insert(in);
    for (ir::Value* o : node.outputs)
      if (o && s.fn && !s.dynamic) p->device_written.insert(o);
    p->steps.push_back(std::move(s));
  }
  for (ir::Value* o : g.outputs) {
    if (p->dev.count(o)) continue;
    auto hv = p->prop.values.find(o);
    if (hv != p->prop.values.end()) KILN_RETURN_IF_ERROR(upload(o, hv->second));
  }
  KILN_RETURN_IF_ERROR(cuda::stream_synchronize(own_stream_));
  Plan* raw = p.get();
  plans_[key] = std::move(p);
  return remember(raw);
}

namespace {

// Host copy of a device tensor (synchronous).
Result<Tensor> to_host(const Tensor& d, void* stream) {
  Tensor h = Tensor::empty(d.dtype(), d.dims());
  KILN_RETURN_IF_ERROR(cuda::copy_async(h.data(), d.data(), h.nbytes(), cuda::CopyKind::kDeviceToHost, stream));
  KILN_RETURN_IF_ERROR(cuda::stream_synchronize(stream));
  return h;
}

}  // namespace

Status CudaExecutor::run_steps(Plan& p, void* stream, const Bindings& direct) {
  const ir::Graph& g = *engine_->model.graph;
  cuda::Env env = handles_->env(stream, engine_->model.options.count("no_tf32") == 0);
  // Values whose dims were known only at run time (after a data-dependent node).
  std::unordered_map<const ir::Value*, Tensor> rt;
  std::vector<cuda::DeviceBuffer> run_owned;
  std::vector<Tensor> keep_host;
  last_fallbacks_ = 0;
  if (profiling_) layer_times_.clear();
  auto device_tensor = [&](const ir::Value* v) -> const Tensor* {
    auto r = rt.find(v);
    if (r != rt.end()) return &r->second;
    auto d = p.dev.find(v);
    return d != p.dev.end() ? &d->second : nullptr;
  };
  for (Step& s : p.steps) {
    const ir::Node& node = *s.node;
    std::unique_ptr<cuda::EventTimer> timer;
    if (profiling_) {
      timer = std::make_unique<cuda::EventTimer>();
      KILN_RETURN_IF_ERROR(timer->record_start(stream));
    }
    if (s.ctx && (direct.empty() || !s.touches_io)) {
      s.ctx->set_cuda_env(&env);
      KILN_RETURN_IF_ERROR(s.fn(*s.ctx));
      if (timer) {
        KILN_RETURN_IF_ERROR(timer->record_stop(stream));
        KILN_ASSIGN_OR_RETURN(float ms, timer->elapsed_ms());
        layer_times_.emplace_back(node.name.empty() ? node.op_type : node.name, ms);
      }
      continue;
    }
    std::vector<Tensor> ins = s.ins, outs = s.outs;
    // Caller device buffers bound straight to graph inputs/outputs (no staging copy).
    if (!direct.empty()) {
      for (size_t i = 0; i < node.inputs.size(); ++i) {
        auto d = node.inputs[i] ? direct.find(node.inputs[i]) : direct.end();
        if (d != direct.end() && !ins[i].is_null()) ins[i] = Tensor::view(ins[i].dtype(), ins[i].dims(), d->second);
      }
      for (size_t k = 0; k < node.outputs.size(); ++k) {
        auto d = node.outputs[k] ? direct.find(node.outputs[k]) : direct.end();
        if (d != direct.end() && !outs[k].is_null()) outs[k] = Tensor::view(outs[k].dtype(), outs[k].dims(), d->second);
      }
    }
    if (s.dynamic) {
      for (size_t i = 0; i < node.inputs.size(); ++i)
        if (node.inputs[i] && ins[i].is_null()) {
          const Tensor* t = device_tensor(node.inputs[i]);
          if (!t && !s.host_values[i])
            return Status(ErrorCode::kInternal,
                          "node " + node.describe() + " input '" + node.inputs[i]->name + "' was not computed");
          if (t) ins[i] = *t;
        }
    }
    bool on_cpu = !s.fn;
    std::vector<ops::TensorType> out_types;  // a dynamic CUDA step's output types, inferred now
    if (s.fn && s.dynamic) {
      // Dims known only now: a CUDA kernel needs them (and its host values) before launch.
      std::vector<ops::TensorType> types;
      bool values_known = true;
      for (size_t i = 0; i < ins.size(); ++i) {
        if (!node.inputs[i])
          types.emplace_back();
        else if (!ins[i].is_null())
          types.push_back({ins[i].dtype(), shape_from_dims(ins[i].dims())});
        else
          types.push_back({s.host_values[i]->dtype(), shape_from_dims(s.host_values[i]->dims())});
      }
      const ops::OpDef* def = ops::OpRegistry::global().find(node.domain, node.op_type);
      for (int vi : def->value_inputs)
        if (node.input(static_cast<size_t>(vi)) && !s.host_values[static_cast<size_t>(vi)]) values_known = false;
      auto otypes = ops::infer_node(node, types, s.host_values);
      bool dims_known = values_known && otypes.ok();
      if (dims_known)
        for (size_t k = 0; k < node.outputs.size(); ++k)
          if (node.outputs[k] && (!(*otypes)[k].shape || shape_volume(*(*otypes)[k].shape) < 0)) dims_known = false;
      if (dims_known)
        out_types = std::move(*otypes);
      else
        on_cpu = true;  // data-dependent here: the CPU kernel computes it
    }
    if (!on_cpu) {
      if (s.dynamic) {
        for (size_t k = 0; k < node.outputs.size(); ++k) {
          if (!node.outputs[k] || !outs[k].is_null()) continue;
          Dims dims = shape_to_dims(*out_types[k].shape);
          KILN_ASSIGN_OR_RETURN(cuda::DeviceBuffer b,
                                cuda::device_alloc(dims_volume(dims) * dtype_size(out_types[k].dtype),
                                                   "value '" + node.outputs[k]->name + "'"));
          outs[k] = Tensor::view(out_types[k].dtype, dims, b.get());
          rt[node.outputs[k]] = outs[k];
          run_owned.push_back(std::move(b));
        }
      }
      std::vector<const Tensor*> in_ptrs;
      for (size_t i = 0; i < ins.size(); ++i) in_ptrs.push_back(ins[i].is_null() ? nullptr : &ins[i]);
      std::vector<Tensor*> out_ptrs;
      for (auto& o : outs) out_ptrs.push_back(o.is_null() ? nullptr : &o);
      ops::KernelContext ctx(node, in_ptrs, out_ptrs);
      ctx.set_cuda_env(&env);
      ctx.set_host_values(s.host_values);
      KILN_RETURN_IF_ERROR(s.fn(ctx));
    } else {
      // CPU: bring inputs to the host, run the CPU kernel, send outputs back.
      ++last_fallbacks_;
      KILN_RETURN_IF_ERROR(cuda::stream_synchronize(stream));
      std::vector<Tensor> host_in(node.inputs.size());
      std::vector<const Tensor*> in_ptrs(node.inputs.size(), nullptr);
      for (size_t i = 0; i < node.inputs.size(); ++i) {
        if (!node.inputs[i]) continue;
        if (s.host_values[i]) {
          in_ptrs[i] = s.host_values[i];
          continue;
        }
        KILN_ASSIGN_OR_RETURN(host_in[i], to_host(ins[i], stream));
        in_ptrs[i] = &host_in[i];
      }
      // Bodies of If/Loop/Scan see host copies of the outer values they name.
      Scope scope;
      std::vector<Tensor> scope_values;
      ops::SubgraphRunner runner;
      const std::vector<std::string> refs = ir::subgraph_captures(node);
      scope_values.reserve(refs.size());
      for (auto& r : refs) {
        const ir::Value* v = g.find_value(r);
        if (!v || scope.names.count(r)) continue;
        auto hv = p.prop.values.find(v);
        if (hv != p.prop.values.end()) {
          scope.names[r] = &hv->second;
        } else if (v->initializer) {
          scope.names[r] = v->initializer.get();
        } else if (const Tensor* t = device_tensor(v)) {
          KILN_ASSIGN_OR_RETURN(Tensor h, to_host(*t, stream));
          scope_values.push_back(h);
          scope.names[r] = &scope_values.back();
        }
      }
      bool has_subgraph = false;
      for (auto& [k, a] : node.attrs.all()) has_subgraph = has_subgraph || a.g || !a.graphs.empty();
      if (has_subgraph)
        runner = [&scope](const ir::Graph& body,
                          const std::vector<Tensor>& body_inputs) -> Result<std::vector<Tensor>> {
          ExecOptions sub;
          std::vector<Tensor> o;
          KILN_RETURN_IF_ERROR(execute_graph(body, body_inputs, &scope, sub, o));
          return o;
        };
      ScopeTypes typing(has_subgraph ? &scope : nullptr);
      std::vector<Tensor> host_out;
      KILN_RETURN_IF_ERROR(ops::run_node(node, in_ptrs, host_out, runner, 1));
      for (size_t k = 0; k < node.outputs.size(); ++k) {
        if (!node.outputs[k]) continue;
        Tensor& h = host_out[k];
        Tensor d = outs[k];
        if (d.is_null() || d.dims() != h.dims() || d.dtype() != h.dtype()) {
          KILN_ASSIGN_OR_RETURN(cuda::DeviceBuffer b,
                                cuda::device_alloc(h.nbytes(), "value '" + node.outputs[k]->name + "'"));
          d = Tensor::view(h.dtype(), h.dims(), b.get());
          run_owned.push_back(std::move(b));
          rt[node.outputs[k]] = d;
        }
        KILN_RETURN_IF_ERROR(cuda::copy_async(d.data(), h.data(), h.nbytes(), cuda::CopyKind::kHostToDevice, stream));
        keep_host.push_back(h);
      }
      KILN_RETURN_IF_ERROR(cuda::stream_synchronize(stream));
    }
    if (timer) {
      KILN_RETURN_IF_ERROR(timer->record_stop(stream));
      KILN_ASSIGN_OR_RETURN(float ms, timer->elapsed_ms());
      layer_times_.emplace_back(node.name.empty() ? node.op_type : node.name, ms);
    }
  }
  // Outputs computed at run time are copied out by enqueue through `rt_outputs_`.
  rt_outputs_.clear();
  for (ir::Value* o : g.outputs) {
    auto r = rt.find(o);
    if (r != rt.end()) rt_outputs_[o] = r->second;
  }
  if (!run_owned.empty() || !keep_host.empty()) {
    // Run-time buffers die here: finish the work that reads them first.
    for (auto& [v, t] : rt_outputs_) {
      KILN_ASSIGN_OR_RETURN(Tensor h, to_host(t, stream));
      rt_host_outputs_[v] = h;
    }
    KILN_RETURN_IF_ERROR(cuda::stream_synchronize(stream));
  }
  return Status();
}

Status CudaExecutor::enqueue(const std::map<std::string, Dims>& input_dims,
                             const std::map<std::string, void*>& addresses, void* stream, bool sync,
                             EnqueueTiming* timing) {
  if (cuda::current_device() != weights_->device) KILN_RETURN_IF_ERROR(cuda::set_device(weights_->device));
  if (!stream) stream = own_stream_;
  const ir::Graph& g = *engine_->model.graph;
  // Shape tensors fed by the caller: read them on the host; their values select the plan.
  std::map<std::string, Tensor> values;
  for (const ir::Value* v : value_inputs_) {
    auto a = addresses.find(v->name);
    auto d = input_dims.find(v->name);
    if (a == addresses.end() || !a->second || d == input_dims.end()) continue;
    Tensor t = Tensor::empty(v->dtype, d->second);
    KILN_RETURN_IF_ERROR(cuda::copy_async(t.data(), a->second, t.nbytes(), cuda::CopyKind::kDefault, stream));
    KILN_RETURN_IF_ERROR(cuda::stream_synchronize(stream));
    values[v->name] = t;
  }
  KILN_ASSIGN_OR_RETURN(Plan * p, plan_for(input_dims, values));
  cuda::EventTimer *t_in = nullptr, *t_run = nullptr, *t_out = nullptr;
  if (timing) {
    for (auto& t : timers_)
      if (!t) t = std::make_unique<cuda::EventTimer>();
    t_in = timers_[0].get(), t_run = timers_[1].get(), t_out = timers_[2].get();
    KILN_RETURN_IF_ERROR(t_in->record_start(stream));
  }
  bool graph_mode = use_graph_ && p->capturable && !profiling_;
  // Caller device buffers are read and written in place, by a graph too (captured with
  // them), unless this plan's callers kept binding other buffers.
  const bool bind_direct = !graph_mode || p->rebinds < kMaxRebinds;
  Bindings direct;
  for (ir::Value* in : g.inputs) {
    auto a = addresses.find(in->name);
    if (a == addresses.end() || !a->second)
      return Status(ErrorCode::kNotFound, "input '" + in->name + "' has no buffer bound (set_tensor_address)");
    bool is_output = false;
    for (ir::Value* o : g.outputs) is_output = is_output || o == in;
    if (bind_direct && !is_output && !p->fallback_reads.count(in) && is_device_pointer(a->second))
      direct[in] = a->second;
  }
  for (ir::Value* o : g.outputs) {
    auto a = addresses.find(o->name);
    if (bind_direct && a != addresses.end() && a->second && p->device_written.count(o) && is_device_pointer(a->second))
      direct[o] = a->second;
  }
  if (graph_mode && p->graph.valid() && direct != p->graph_bindings) {
    p->graph.reset();                                 // captured with other buffers
    if (++p->rebinds >= kMaxRebinds) direct.clear();  // from this call on: staged, one graph for all
  }
  for (ir::Value* in : g.inputs) {
    if (direct.count(in)) continue;
    Tensor& d = p->dev[in];
    KILN_RETURN_IF_ERROR(
        cuda::copy_async(d.data(), addresses.at(in->name), d.nbytes(), cuda::CopyKind::kDefault, stream)
            .with_context("copying input '" + in->name + "'"));
  }
  if (timing) {
    KILN_RETURN_IF_ERROR(t_in->record_stop(stream));
    KILN_RETURN_IF_ERROR(t_run->record_start(stream));
  }
  rt_host_outputs_.clear();
  if (graph_mode) {
    if (!p->graph.valid() && p->runs > 0 && p->capture_failures < 3) {
      std::shared_lock<std::shared_mutex> capturing(cuda::capture_lock());
      KILN_RETURN_IF_ERROR(cuda::Graph::begin_capture(stream));
      p->graph_bindings = direct;
      Status s = run_steps(*p, stream, direct);
      Status e = p->graph.end_capture(stream, handles_->lt());
      if (!s.ok() || !e.ok()) {
        // Work outside this context (another thread's first-run setup) can invalidate
        // a capture: this call runs eagerly below, where a real kernel error shows
        // again, and a later call captures anew.
        p->graph.reset();
        ++p->capture_failures;
      }
    }
    if (p->graph.valid())
      KILN_RETURN_IF_ERROR(p->graph.launch(stream));
    else
      KILN_RETURN_IF_ERROR(run_steps(*p, stream, direct));
  } else {
    KILN_RETURN_IF_ERROR(run_steps(*p, stream, direct));
  }
  ++p->runs;
  last_plan_ = p;
  if (timing) {
    KILN_RETURN_IF_ERROR(t_run->record_stop(stream));
    KILN_RETURN_IF_ERROR(t_out->record_start(stream));
  }
  output_dims_.clear();
  for (ir::Value* o : g.outputs) {
    const Tensor* src = nullptr;
    auto h = rt_host_outputs_.find(o);
    auto d = p->dev.find(o);
    if (h != rt_host_outputs_.end())
      src = &h->second;
    else if (d != p->dev.end())
      src = &d->second;
    if (!src) return Status(ErrorCode::kInternal, "output '" + o->name + "' was not computed");
    output_dims_[o->name] = src->dims();
    auto a = addresses.find(o->name);
    if (a == addresses.end() || !a->second || direct.count(o)) continue;
    KILN_RETURN_IF_ERROR(cuda::copy_async(a->second, src->data(), src->nbytes(), cuda::CopyKind::kDefault, stream)
                             .with_context("copying output '" + o->name + "'"));
  }
  if (timing) {
    KILN_RETURN_IF_ERROR(t_out->record_stop(stream));
    KILN_ASSIGN_OR_RETURN(timing->h2d_ms, t_in->elapsed_ms());
    KILN_ASSIGN_OR_RETURN(timing->compute_ms, t_run->elapsed_ms());
    KILN_ASSIGN_OR_RETURN(timing->d2h_ms, t_out->elapsed_ms());
  }
  if (sync || !rt_host_outputs_.empty()) KILN_RETURN_IF_ERROR(cuda::stream_synchronize(stream));
  return Status();
}

Result<Tensor> CudaExecutor::output_to_host(const std::string& name) {
  const ir::Graph& g = *engine_->model.graph;
  for (ir::Value* o : g.outputs) {
    if (o->name != name) continue;
    auto h = rt_host_outputs_.find(o);
    if (h != rt_host_outputs_.end()) return h->second.clone();
    if (!last_plan_) break;
    auto d = last_plan_->dev.find(o);
    if (d == last_plan_->dev.end()) break;
    return to_host(d->second, own_stream_);
  }
  return Status(ErrorCode::kNotFound, "output '" + name + "' has not been computed (run the context first)");
}

}  // namespace kiln

#include "backends/cuda/node_runner.h"

#include <algorithm>
#include <mutex>
#include <optional>
#include <shared_mutex>

#include "backends/cuda/api.h"
#include "backends/cuda/tactic_sink.h"
#include "base/env.h"
#include "ops/op.h"

namespace kiln::cuda {

namespace {
struct ThreadState {
  std::unique_ptr<Handles> handles;
  void* stream = nullptr;
  DeviceBuffer flush;  ///< written before each cold-L2 timing sample
  ~ThreadState() { stream_destroy(stream); }
};

Result<ThreadState*> thread_state(int device) {
  thread_local ThreadState ts;
  KILN_RETURN_IF_ERROR(set_device(device));
  if (!ts.handles) {
    KILN_ASSIGN_OR_RETURN(ts.handles, Handles::create(device, workspace_bytes(device)));
    KILN_RETURN_IF_ERROR(stream_create(&ts.stream));
  }
  return &ts;
}

Result<const ops::FastKernel*> find_kernel(const ir::Node& node, const std::string& kernel) {
  const ops::OpDef* def = ops::OpRegistry::global().find(node.domain, node.op_type);
  if (!def) return Status(ErrorCode::kUnsupported, "node " + node.describe() + ": operator is not supported");
  for (auto& k : def->cuda)
    if (k.name == kernel) return &k;
  return Status(ErrorCode::kNotFound, "node " + node.describe() + ": no CUDA kernel named '" + kernel + "'");
}

// Launches with the node's kiln.tactic replaced by opts.tactic (when >= 0).
class Launcher {
 public:
  Launcher(const ir::Node& node, DeviceNodeIO& io, const NodeRunOptions& opts, ThreadState& ts)
      : env_(ts.handles->env(ts.stream, opts.allow_tf32)) {
    if (opts.tactic >= 0) {
      copy_.emplace(node);
      copy_->attrs.set(ops::kTacticAttr, ir::Attribute::from_int(opts.tactic));
    }
    std::vector<const Tensor*> in(io.inputs.size(), nullptr);
    std::vector<Tensor*> out(io.outputs.size(), nullptr);
    for (size_t i = 0; i < in.size(); ++i)
      if (!io.inputs[i].is_null()) in[i] = &io.inputs[i];
    for (size_t i = 0; i < out.size(); ++i)
      if (!io.outputs[i].is_null()) out[i] = &io.outputs[i];
    ctx_.emplace(copy_ ? *copy_ : node, std::move(in), std::move(out));
    ctx_->set_cuda_env(&env_);
    ctx_->set_host_values(io.host_inputs);
  }
  ops::KernelContext& ctx() { return *ctx_; }

 private:
  Env env_;
  std::optional<ir::Node> copy_;
  std::optional<ops::KernelContext> ctx_;
};

// KILN_TACTIC_COLD_L2=1 (an experiment): each sample is one launch after 256 MiB of
// memset has evicted the L2, so weights and inputs come from HBM as they do in an
// engine. Back-to-back launches of one layer keep its weights in L2 (50 MB on an
// H100): ResNet-50 bs1 picked cuDNN graph engines that way which ran slower in the engine.
bool cold_l2() {
  static const bool on = env_is("KILN_TACTIC_COLD_L2", "1");
  return on;
}
constexpr size_t kFlushBytes = size_t(256) << 20;

// Samples of kernels shorter than this average several back-to-back launches.
constexpr float kMinSampleMs = 0.1f;
constexpr int kMaxRepeats = 8;

Status launch_n(const ops::FastKernel& k, ops::KernelContext& ctx, int launches) {
  for (int r = 0; r < launches; ++r) KILN_RETURN_IF_ERROR(k.fn(ctx));
  return Status();
}

// Samples replay a CUDA graph of the launches (KILN_TACTIC_GRAPH_TIMING=0: eager
// launches), so a sample is GPU time alone, as an engine run with CUDA graphs sees it.
// Eager samples of short kernels also count each call's host work: cuDNN's legacy
// calls spend tens of microseconds there, which made them lose to graph engines that
// ran slower in the engine (ResNet-50 FP32 bs32: 2.73 ms with the graph engines that
// eager timing chose, 2.27 with the legacy calls alone; H100).
bool graph_timing() {
  static const bool on = !env_is("KILN_TACTIC_GRAPH_TIMING", "0");
  return on;
}

// Whether timing graphs fold cuBLASLt's per-call workspace memsets as engine graphs do
// (LtWorkspaces, api.h); KILN_TACTIC_LT_FOLD=0 times them with the memsets.
bool fold_lt_memsets() {
  static const bool on = !env_is("KILN_TACTIC_LT_FOLD", "0");
  return on;
}

// Captures `launches` launches of `k` into `g`; false (and `g` empty) when the kernel
// cannot be captured (a host read of a device value, a first-run allocation, ...).
bool capture_launches(const ops::FastKernel& k, ops::KernelContext& ctx, void* stream, int launches, Graph* g) {
  std::shared_lock<std::shared_mutex> capturing(capture_lock());
  if (!Graph::begin_capture(stream).ok()) {
    g->reset();
    return false;
  }
  Status s = launch_n(k, ctx, launches);
  const Env* env = ctx.cuda_env();
  Status e = g->end_capture(stream, fold_lt_memsets() && env ? env->lt : nullptr);
  if (s.ok() && e.ok()) return true;
  g->reset();
  return false;
}

// One sample between CUDA events: `launches` launches, replayed from `graph` when it holds them.
Result<float> sample_ms(const ops::FastKernel& k, ops::KernelContext& ctx, void* stream, int launches,
                        const Graph& graph) {
  EventTimer timer;
  KILN_RETURN_IF_ERROR(timer.record_start(stream));
  KILN_RETURN_IF_ERROR(graph.valid() ? graph.launch(stream) : launch_n(k, ctx, launches));
  KILN_RETURN_IF_ERROR(timer.record_stop(stream));
  return timer.elapsed_ms();
}

Result<float> median_ms(const ops::FastKernel& k, ops::KernelContext& ctx, ThreadState& ts, int iterations) {
  void* stream = ts.stream;
  const bool cold = cold_l2();
  if (cold && !ts.flush.get()) {
    KILN_ASSIGN_OR_RETURN(ts.flush, device_alloc(kFlushBytes, "the L2 flush buffer of cold tactic timing"));
  }
  Graph graph;
  if (graph_timing() && capture_launches(k, ctx, stream, 1, &graph))
    KILN_RETURN_IF_ERROR(graph.launch(stream));  // the first replay uploads the graph
  // A warm sample times `repeats` back-to-back launches: one launch of a small kernel
  // is shorter than the events' resolution and launch jitter. One probe launch says
  // how many; a batch-256 convolution needs one (8 made YOLOv8n's bs256 build spend
  // ~15 s of its 20 s timing the same kernels).
  int repeats = 1;
  if (!cold) {
    KILN_ASSIGN_OR_RETURN(float probe, sample_ms(k, ctx, stream, 1, graph));
    repeats =
        probe >= kMinSampleMs ? 1 : std::min(kMaxRepeats, static_cast<int>(kMinSampleMs / std::max(probe, 1e-4f)) + 1);
    if (repeats > 1 && graph.valid()) {
      graph.reset();
      if (capture_launches(k, ctx, stream, repeats, &graph)) KILN_RETURN_IF_ERROR(graph.launch(stream));
    }
  }
  std::vector<float> t;
  for (int it = 0; it < iterations; ++it) {
    if (cold) KILN_RETURN_IF_ERROR(memset_async(ts.flush.get(), it & 1, kFlushBytes, stream));
    KILN_ASSIGN_OR_RETURN(float ms, sample_ms(k, ctx, stream, repeats, graph));
    t.push_back(ms / repeats);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
}  // namespace

Result<std::unique_ptr<DeviceNodeIO>> upload_node_io(const ir::Node& node, const std::vector<const Tensor*>& inputs,
                                                     const std::vector<Tensor>& outputs, const NodeRunOptions& opts,
                                                     const std::vector<std::optional<Dims>>& repeat_to) {
  KILN_ASSIGN_OR_RETURN(ThreadState * ts, thread_state(opts.device));
  auto io = std::make_unique<DeviceNodeIO>();
  io->inputs.resize(inputs.size());
  io->host_inputs = inputs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i]) continue;
    const bool repeat = i < repeat_to.size() && repeat_to[i].has_value();
    const Dims& dims = repeat ? *repeat_to[i] : inputs[i]->dims();
    const size_t pattern = inputs[i]->nbytes();
    const size_t total = repeat ? static_cast<size_t>(dims_volume(dims)) * dtype_size(inputs[i]->dtype()) : pattern;
    if (repeat && (pattern == 0 || pattern > total))
      return Status(ErrorCode::kInvalidArgument, "node " + node.describe() + ": input " + std::to_string(i) +
                                                     "'s pattern is empty or larger than its dims");
    KILN_ASSIGN_OR_RETURN(DeviceBuffer b, device_alloc(std::max<size_t>(total, 1), "a node input"));
    KILN_RETURN_IF_ERROR(copy_async(b.get(), inputs[i]->data(), pattern, CopyKind::kHostToDevice, ts->stream));
    auto* base = static_cast<uint8_t*>(b.get());
    for (size_t done = pattern; done < total;) {  // doubling copies on the device
      const size_t n = std::min(done, total - done);
      KILN_RETURN_IF_ERROR(copy_async(base + done, base, n, CopyKind::kDeviceToDevice, ts->stream));
      done += n;
    }
    if (repeat) io->host_inputs[i] = nullptr;
    io->inputs[i] = Tensor::view(inputs[i]->dtype(), dims, b.get());
    io->buffers.push_back(std::move(b));
  }
  io->outputs.resize(outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (i >= node.outputs.size() || !node.outputs[i] || outputs[i].is_null()) continue;
    KILN_ASSIGN_OR_RETURN(DeviceBuffer b, device_alloc(std::max<size_t>(outputs[i].nbytes(), 1), "a node output"));
    // Poison outputs so a kernel that skips elements is caught.
    KILN_RETURN_IF_ERROR(memset_async(b.get(), 0xff, b.size(), ts->stream));
    io->outputs[i] = Tensor::view(outputs[i].dtype(), outputs[i].dims(), b.get());
    io->buffers.push_back(std::move(b));
  }
  KILN_RETURN_IF_ERROR(stream_synchronize(ts->stream));
  return io;
}

Result<std::vector<Tensor>> run_node_on_device(const ir::Node& node, const std::string& kernel,
                                               const std::vector<const Tensor*>& inputs,
                                               const std::vector<Tensor>& outputs, const NodeRunOptions& opts) {
  KILN_ASSIGN_OR_RETURN(const ops::FastKernel* k, find_kernel(node, kernel));
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<DeviceNodeIO> io, upload_node_io(node, inputs, outputs, opts));
  KILN_ASSIGN_OR_RETURN(ThreadState * ts, thread_state(opts.device));
  Launcher launch(node, *io, opts, *ts);
  KILN_RETURN_IF_ERROR(k->fn(launch.ctx()));
  if (opts.timing_iterations > 0 && opts.ms) {
    KILN_ASSIGN_OR_RETURN(*opts.ms, median_ms(*k, launch.ctx(), *ts, opts.timing_iterations));
  }
  std::vector<Tensor> result(outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (io->outputs[i].is_null()) continue;
    result[i] = Tensor::empty(outputs[i].dtype(), outputs[i].dims());
    KILN_RETURN_IF_ERROR(
        copy_async(result[i].data(), io->outputs[i].data(), result[i].nbytes(), CopyKind::kDeviceToHost, ts->stream));
  }
  Status s = stream_synchronize(ts->stream);
  if (!s.ok()) return s.with_context("node " + node.describe() + " kernel " + kernel);
  return result;
}

Result<std::vector<int64_t>> node_tactics_on_device(const ir::Node& node, const std::string& kernel, DeviceNodeIO& io,
                                                    const NodeRunOptions& opts) {
  KILN_ASSIGN_OR_RETURN(const ops::FastKernel* k, find_kernel(node, kernel));
  if (!k->tactics) return std::vector<int64_t>{};
  KILN_ASSIGN_OR_RETURN(ThreadState * ts, thread_state(opts.device));
  Launcher launch(node, io, opts, *ts);
  auto ids = k->tactics(launch.ctx());
  Status s = stream_synchronize(ts->stream);
  if (!ids.ok()) return ids.status();
  if (!s.ok()) return s.with_context("node " + node.describe() + " kernel " + kernel);
  return ids;
}

Status warm_node_on_device(const ir::Node& node, const std::string& kernel, DeviceNodeIO& io,
                           const std::vector<int64_t>& tactics, const NodeRunOptions& opts) {
  KILN_ASSIGN_OR_RETURN(const ops::FastKernel* k, find_kernel(node, kernel));
  KILN_ASSIGN_OR_RETURN(ThreadState * ts, thread_state(opts.device));
  for (int64_t t : tactics) {
    NodeRunOptions o = opts;
    o.tactic = t;
    Launcher launch(node, io, o, *ts);
    (void)k->fn(launch.ctx());
  }
  Status s = stream_synchronize(ts->stream);
  if (!s.ok()) return s.with_context("node " + node.describe() + " kernel " + kernel);
  return s;
}

Result<std::string> node_state_on_device(const ir::Node& node, const std::string& kernel, DeviceNodeIO& io,
                                         const NodeRunOptions& opts) {
  KILN_ASSIGN_OR_RETURN(const ops::FastKernel* k, find_kernel(node, kernel));
  KILN_ASSIGN_OR_RETURN(ThreadState * ts, thread_state(opts.device));
  std::string state;
  Launcher launch(node, io, opts, *ts);
  detail::state_sink = &state;
  Status s = k->fn(launch.ctx());
  detail::state_sink = nullptr;
  if (s.ok()) s = stream_synchronize(ts->stream);
  if (!s.ok()) return s.with_context("node " + node.describe() + " kernel " + kernel);
  return state;
}

Result<float> time_node_on_device(const ir::Node& node, const std::string& kernel, DeviceNodeIO& io, int warmup,
                                  const NodeRunOptions& opts) {
  KILN_ASSIGN_OR_RETURN(const ops::FastKernel* k, find_kernel(node, kernel));
  KILN_ASSIGN_OR_RETURN(ThreadState * ts, thread_state(opts.device));
  Launcher launch(node, io, opts, *ts);
  for (int i = 0; i < warmup; ++i) KILN_RETURN_IF_ERROR(k->fn(launch.ctx()));
  auto ms = median_ms(*k, launch.ctx(), *ts, std::max(1, opts.timing_iterations));
  Status s = stream_synchronize(ts->stream);
  if (!ms.ok()) return ms.status();
  if (!s.ok()) return s.with_context("node " + node.describe() + " kernel " + kernel);
  return ms;
}

}  // namespace kiln::cuda

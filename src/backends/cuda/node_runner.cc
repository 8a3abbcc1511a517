#include "backends/cuda/node_runner.h"

#include <algorithm>
#include <mutex>

#include "backends/cuda/api.h"
#include "ops/op.h"

namespace kiln::cuda {

namespace {
struct ThreadState {
  std::unique_ptr<Handles> handles;
  void* stream = nullptr;
  ~ThreadState() { stream_destroy(stream); }
};
}  // namespace

Result<std::vector<Tensor>> run_node_on_device(const ir::Node& node, const std::string& kernel,
                                               const std::vector<const Tensor*>& inputs,
                                               const std::vector<Tensor>& outputs, const NodeRunOptions& opts) {
  const ops::OpDef* def = ops::OpRegistry::global().find(node.domain, node.op_type);
  if (!def) return Status(ErrorCode::kUnsupported, "node " + node.describe() + ": operator is not supported");
  ops::KernelFn fn = nullptr;
  for (auto& k : def->cuda)
    if (k.name == kernel) fn = k.fn;
  if (!fn) return Status(ErrorCode::kNotFound, "node " + node.describe() + ": no CUDA kernel named '" + kernel + "'");
  thread_local ThreadState ts;
  KILN_RETURN_IF_ERROR(set_device(opts.device));
  if (!ts.handles) {
    KILN_ASSIGN_OR_RETURN(ts.handles, Handles::create(opts.device, 64 << 20));
    KILN_RETURN_IF_ERROR(stream_create(&ts.stream));
  }
  Env env = ts.handles->env(ts.stream, opts.allow_tf32);
  std::vector<DeviceBuffer> bufs;
  std::vector<Tensor> dev_in(inputs.size());
  std::vector<const Tensor*> in_ptrs(inputs.size(), nullptr);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i]) continue;
    KILN_ASSIGN_OR_RETURN(DeviceBuffer b, device_alloc(std::max<size_t>(inputs[i]->nbytes(), 1), "a test input"));
    KILN_RETURN_IF_ERROR(copy_async(b.get(), inputs[i]->data(), inputs[i]->nbytes(), CopyKind::kHostToDevice, ts.stream));
    dev_in[i] = Tensor::view(inputs[i]->dtype(), inputs[i]->dims(), b.get());
    in_ptrs[i] = &dev_in[i];
    bufs.push_back(std::move(b));
  }
  std::vector<Tensor> dev_out(outputs.size());
  std::vector<Tensor*> out_ptrs(outputs.size(), nullptr);
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (i >= node.outputs.size() || !node.outputs[i] || outputs[i].is_null()) continue;
    KILN_ASSIGN_OR_RETURN(DeviceBuffer b, device_alloc(std::max<size_t>(outputs[i].nbytes(), 1), "a test output"));
    // Poison outputs so a kernel that skips elements is caught.
    KILN_RETURN_IF_ERROR(memset_async(b.get(), 0xff, b.size(), ts.stream));
    dev_out[i] = Tensor::view(outputs[i].dtype(), outputs[i].dims(), b.get());
    out_ptrs[i] = &dev_out[i];
    bufs.push_back(std::move(b));
  }
  ops::KernelContext ctx(node, in_ptrs, out_ptrs);
  ctx.set_cuda_env(&env);
  ctx.set_host_values(inputs);
  KILN_RETURN_IF_ERROR(fn(ctx));
  if (opts.timing_iterations > 0 && opts.ms) {
    std::vector<float> t;
    for (int it = 0; it < opts.timing_iterations; ++it) {
      EventTimer timer;
      KILN_RETURN_IF_ERROR(timer.record_start(ts.stream));
      KILN_RETURN_IF_ERROR(fn(ctx));
      KILN_RETURN_IF_ERROR(timer.record_stop(ts.stream));
      KILN_ASSIGN_OR_RETURN(float ms, timer.elapsed_ms());
      t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    *opts.ms = t[t.size() / 2];
  }
  std::vector<Tensor> result(outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!out_ptrs[i]) continue;
    result[i] = Tensor::empty(outputs[i].dtype(), outputs[i].dims());
    KILN_RETURN_IF_ERROR(copy_async(result[i].data(), dev_out[i].data(), result[i].nbytes(), CopyKind::kDeviceToHost,
                                    ts.stream));
  }
  Status s = stream_synchronize(ts.stream);
  if (!s.ok()) return s.with_context("node " + node.describe() + " kernel " + kernel);
  return result;
}

}  // namespace kiln::cuda

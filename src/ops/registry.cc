#include <cstring>
#include <mutex>
#include <new>

#include "ops/layout.h"
#include "ops/op.h"

namespace kiln::ops {

namespace {
std::string canonical_domain(const std::string& d) { return d == "ai.onnx" ? "" : d; }
}  // namespace

const OpRegistry& OpRegistry::global() {
  static OpRegistry* reg = [] {
    auto* r = new OpRegistry();
    register_all_ops(*r);
    return r;
  }();
  return *reg;
}

void OpRegistry::add(OpDef def) {
  auto key = std::make_pair(canonical_domain(def.domain), def.name);
  ops_[key] = std::make_unique<OpDef>(std::move(def));
}

Status OpRegistry::add_cuda_kernel(const std::string& domain, const std::string& name, FastKernel k) {
  auto it = ops_.find({canonical_domain(domain), name});
  if (it == ops_.end())
    return Status(ErrorCode::kInternal, "CUDA kernel '" + k.name + "' registered for unknown op " + name);
  it->second->cuda.push_back(std::move(k));
  return Status();
}

const OpDef* OpRegistry::find(const std::string& domain, const std::string& name) const {
  auto it = ops_.find({canonical_domain(domain), name});
  return it == ops_.end() ? nullptr : it->second.get();
}

std::vector<const OpDef*> OpRegistry::all() const {
  std::vector<const OpDef*> r;
  for (auto& [k, v] : ops_) r.push_back(v.get());
  return r;
}

Result<std::vector<TensorType>> infer_node(const ir::Node& node, const std::vector<TensorType>& inputs,
                                           const std::vector<const Tensor*>& values) {
  const OpDef* def = OpRegistry::global().find(node.domain, node.op_type);
  if (!def)
    return Status(ErrorCode::kUnsupported, "node " + node.describe() + ": operator " +
                                               (node.domain.empty() ? "" : node.domain + ".") + node.op_type +
                                               " is not supported by kiln");
  if (node.opset < def->min_opset || node.opset > def->max_opset)
    return Status(ErrorCode::kUnsupported, "node " + node.describe() + ": opset " + std::to_string(node.opset) +
                                               " of " + node.op_type + " is not supported (kiln covers " +
                                               std::to_string(def->min_opset) + ".." +
                                               std::to_string(def->max_opset) + ")");
  if (is_nhwc(node)) {
    // The op's own inference sees NCHW; its NHWC outputs (nhwc_output) go back.
    std::vector<TensorType> in = inputs;
    std::vector<const Tensor*> vals = values;
    for (size_t i = 0; i < in.size(); ++i)
      if (nhwc_input_slot(node, i) != LayoutSlot::kPlain) {
        if (in[i].shape) in[i].shape = nhwc_to_nchw(*in[i].shape);
        if (i < vals.size()) vals[i] = nullptr;
      }
    InferContext ctx(node, in, vals);
    KILN_RETURN_IF_ERROR(def->infer(ctx));
    auto out = ctx.outputs();
    for (size_t k = 0; k < out.size(); ++k)
      if (out[k].shape && nhwc_output(node, k)) out[k].shape = nchw_to_nhwc(*out[k].shape);
    return out;
  }
  InferContext ctx(node, inputs, values);
  KILN_RETURN_IF_ERROR(def->infer(ctx));
  return ctx.outputs();
}

namespace {
Status run_node_impl(const ir::Node& node, const std::vector<const Tensor*>& inputs, std::vector<Tensor>& outputs,
                     const SubgraphRunner& runner, int num_threads, const OutputAllocator& alloc);
Status run_nhwc_on_cpu(const ir::Node& node, const std::vector<const Tensor*>& inputs, std::vector<Tensor>& outputs,
                       const SubgraphRunner& runner, int num_threads, const OutputAllocator& alloc);
}  // namespace

// A legal but huge request (ConstantOfShape of 2^33 floats) must be an error, not an abort.
Status run_node(const ir::Node& node, const std::vector<const Tensor*>& inputs, std::vector<Tensor>& outputs,
                const SubgraphRunner& runner, int num_threads, const OutputAllocator& alloc) {
  try {
    return run_node_impl(node, inputs, outputs, runner, num_threads, alloc);
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::kOutOfMemory, "node " + node.describe() + ": out of host memory for its outputs");
  }
}

namespace {
// An NHWC node on the CPU: run the NCHW op on permuted copies, permute its NHWC outputs back.
Status run_nhwc_on_cpu(const ir::Node& node, const std::vector<const Tensor*>& inputs, std::vector<Tensor>& outputs,
                       const SubgraphRunner& runner, int num_threads, const OutputAllocator& alloc) {
  ir::Node plain = node;
  plain.attrs.erase(kNhwcAttr);
  std::vector<Tensor> held(inputs.size());
  std::vector<const Tensor*> ins = inputs;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i] && nhwc_input_slot(node, i) != LayoutSlot::kPlain) {
      held[i] = tensor_nhwc_to_nchw(*inputs[i]);
      ins[i] = &held[i];
    }
  std::vector<Tensor> outs;
  KILN_RETURN_IF_ERROR(run_node_impl(plain, ins, outs, runner, num_threads, nullptr));
  outputs.resize(node.outputs.size());
  for (size_t k = 0; k < outs.size(); ++k) {
    if (!node.outputs[k]) continue;
    Tensor t = nhwc_output(node, k) ? tensor_nchw_to_nhwc(outs[k]) : outs[k];
    if (alloc) {
      Tensor dst = alloc(k, t.dtype(), t.dims());
      if (dst.data() != t.data() && t.nbytes()) std::memcpy(dst.data(), t.data(), t.nbytes());
      outputs[k] = dst;
    } else {
      outputs[k] = t;
    }
  }
  return Status();
}

Status run_node_impl(const ir::Node& node, const std::vector<const Tensor*>& inputs, std::vector<Tensor>& outputs,
                     const SubgraphRunner& runner, int num_threads, const OutputAllocator& alloc) {
  if (is_nhwc(node)) return run_nhwc_on_cpu(node, inputs, outputs, runner, num_threads, alloc);
  const OpDef* def = OpRegistry::global().find(node.domain, node.op_type);
  if (!def) return Status(ErrorCode::kUnsupported, "node " + node.describe() + ": operator is not supported");
  std::vector<TensorType> types(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i]) types[i] = TensorType{inputs[i]->dtype(), shape_from_dims(inputs[i]->dims())};
  InferContext ictx(node, types, inputs);
  KILN_RETURN_IF_ERROR(def->infer(ictx));
  outputs.resize(node.outputs.size());
  std::vector<Tensor*> outs(node.outputs.size(), nullptr);
  for (size_t i = 0; i < node.outputs.size(); ++i) {
    if (!node.outputs[i]) continue;
    const TensorType& t = ictx.outputs()[i];
    if (t.dtype == DataType::kUndefined)
      return Status(ErrorCode::kInternal, "node " + node.describe() + ": inference left output " +
                                              std::to_string(i) + " without a dtype");
    Dims dims = t.shape ? shape_to_dims(*t.shape) : Dims{};
    bool concrete = t.shape && dims_volume(dims) >= 0;
    if (!concrete) {
      // Data-dependent: the kernel allocates it.
      outputs[i] = Tensor();
    } else if (alloc) {
      outputs[i] = alloc(i, t.dtype, dims);
    } else if (outputs[i].is_null() || outputs[i].dtype() != t.dtype || outputs[i].dims() != dims) {
      outputs[i] = Tensor::empty(t.dtype, dims);
    }
    outs[i] = &outputs[i];
  }
  KernelContext kctx(node, inputs, outs);
  kctx.set_num_threads(num_threads);
  if (runner) kctx.set_subgraph_runner(runner);
  KernelFn fn = def->ref;
  if (!node.kernel.empty() && node.kernel != "ref") {
    for (auto& k : def->fast)
      if (k.name == node.kernel) fn = k.fn;
  }
  if (!fn) return Status(ErrorCode::kInternal, "node " + node.describe() + ": no kernel");
  return fn(kctx);
}
}  // namespace

}  // namespace kiln::ops

#include "select/select_kernels.h"

#include "ops/op.h"

namespace kiln::select {

Status select_kernels(ir::Graph& g, const BuilderConfig& config, Logger& logger) {
  if (config.get_flag(BuilderFlag::kFP16) || config.get_flag(BuilderFlag::kBF16) ||
      config.get_flag(BuilderFlag::kINT8) || config.get_flag(BuilderFlag::kFP8))
    logger.emit(Logger::Severity::kWarning,
                "reduced-precision flags are ignored for CPU engines: every layer computes in float32");
  for (auto& node : g.nodes()) {
    const ops::OpDef* def = ops::OpRegistry::global().find(node->domain, node->op_type);
    if (!def) return Status(ErrorCode::kUnsupported, "node " + node->describe() + ": operator is not supported");
    std::vector<ops::TensorType> types;
    for (ir::Value* in : node->inputs)
      types.push_back(in ? ops::TensorType{in->dtype, in->shape} : ops::TensorType{});
    node->kernel = "ref";
    for (const ops::FastKernel& k : def->fast) {
      if (!k.applies || k.applies(*node, types)) {
        node->kernel = k.name;
        break;
      }
    }
    node->device = ir::Device::kCPU;
    DataType out = node->outputs.empty() || !node->outputs[0] ? DataType::kFloat32 : node->outputs[0]->dtype;
    node->precision = dtype_is_float(out) ? out : DataType::kFloat32;
  }
  return Status();
}

}  // namespace kiln::select

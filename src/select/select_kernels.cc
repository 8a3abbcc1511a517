#include "select/select_kernels.h"

#include <map>

#include "ops/op.h"

namespace kiln::select {

namespace {

std::vector<ops::TensorType> input_types(const ir::Node& node) {
  std::vector<ops::TensorType> types;
  for (ir::Value* in : node.inputs) types.push_back(in ? ops::TensorType{in->dtype, in->shape} : ops::TensorType{});
  return types;
}

// The first CPU fast kernel that applies, else the reference.
void select_cpu_kernel(ir::Node& node, const ops::OpDef& def, const std::vector<ops::TensorType>& types) {
  node.kernel = "ref";
  for (const ops::FastKernel& k : def.fast) {
    if (!k.applies || k.applies(node, types)) {
      node.kernel = k.name;
      break;
    }
  }
  node.device = ir::Device::kCPU;
}

DataType node_precision(const ir::Node& node) {
  DataType out = node.outputs.empty() || !node.outputs[0] ? DataType::kFloat32 : node.outputs[0]->dtype;
  return dtype_is_float(out) ? out : DataType::kFloat32;
}

}  // namespace

Status select_kernels(ir::Graph& g, const BuilderConfig& config, Logger& logger) {
  bool cuda = config.device() == DeviceType::kCUDA;
  if (!cuda && (config.get_flag(BuilderFlag::kFP16) || config.get_flag(BuilderFlag::kBF16) ||
                config.get_flag(BuilderFlag::kINT8) || config.get_flag(BuilderFlag::kFP8)))
    logger.emit(Logger::Severity::kWarning,
                "reduced-precision flags are ignored for CPU engines: every layer computes in float32");
  std::map<std::string, int> fallbacks;
  for (auto& node : g.nodes()) {
    const ops::OpDef* def = ops::OpRegistry::global().find(node->domain, node->op_type);
    if (!def) return Status(ErrorCode::kUnsupported, "node " + node->describe() + ": operator is not supported");
    auto types = input_types(*node);
    select_cpu_kernel(*node, *def, types);
    if (cuda) {
      bool found = false;
      for (const ops::FastKernel& k : def->cuda) {
        if (!k.applies || k.applies(*node, types)) {
          node->kernel = k.name;
          node->device = ir::Device::kCUDA;
          found = true;
          break;
        }
      }
      if (!found) {
        std::string dt = types.empty() ? "" : std::string(" ") + dtype_name(types[0].dtype);
        ++fallbacks[node->op_type + dt];
      }
    }
    node->precision = node_precision(*node);
  }
  if (!fallbacks.empty()) {
    std::string list;
    for (auto& [op, n] : fallbacks) list += (list.empty() ? "" : ", ") + op + " x" + std::to_string(n);
    logger.emit(Logger::Severity::kInfo,
                "layers without a CUDA kernel run on the CPU (unless they only compute shapes): " + list);
  }
  return Status();
}

}  // namespace kiln::select

// MatMul activation fusion: a Relu or GELU reading a MatMulBias joins it, so the
// GPU applies it in cuBLASLt's epilogue instead of another pass over Y.
//   z = MatMulBias(x, W, b); y = Relu(z)            becomes   y = MatMulBias(x, W, b, activation="Relu")
//   z = MatMulBias(x, W, b); y = Gelu(z, "tanh")    becomes   y = MatMulBias(x, W, b, activation="GeluTanh")
// The exact (erf) GELU -- Gelu(z) or com.microsoft Gelu -- becomes "GeluTanh" only
// in FP16/BF16 CUDA engines: cuBLASLt's GELU epilogue is the tanh form, which
// differs from erf by at most 4.1e-4 (absolute), below fp16's rounding of the
// values around it; FP32 engines keep the exact Gelu op.
// z must be read only by the activation and not be a graph output.
#include <string>

#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

// The MatMulBias activation `act` becomes, and whether that approximates it (the
// erf GELU as the tanh form); an empty name when it does not fuse here.
struct Epilogue {
  std::string name;
  bool approximates = false;
};

Epilogue epilogue_for(const ir::Node* act, bool half_engine) {
  if (act->inputs.size() != 1 || act->outputs.size() != 1 || !act->outputs[0]) return {};
  if (act->domain.empty() && act->op_type == "Relu") return {"Relu"};
  const bool onnx_gelu = act->domain.empty() && act->op_type == "Gelu";
  const bool ms_gelu = act->domain == "com.microsoft" && act->op_type == "Gelu";
  const std::string approximate = onnx_gelu ? act->attrs.get_string("approximate", "none") : "";
  if (onnx_gelu && approximate == "tanh") return {"GeluTanh"};
  if (((onnx_gelu && approximate == "none") || ms_gelu) && half_engine) return {"GeluTanh", true};
  return {};
}

}  // namespace

Status fuse_matmul_activation(ir::Graph& g, PassContext& ctx) {
  const bool cuda = ctx.config && ctx.config->device() == DeviceType::kCUDA;
  const bool half_engine =
      cuda && (ctx.config->get_flag(BuilderFlag::kFP16) || ctx.config->get_flag(BuilderFlag::kBF16));
  std::vector<const ir::Node*> removed;
  int fused = 0, approximated = 0;
  for (auto& n : g.nodes()) {
    ir::Node* mm = n.get();
    if (mm->op_type != "MatMulBias" || mm->domain != "kiln" || mm->outputs.size() != 1 || !mm->outputs[0]) continue;
    if (!mm->attrs.get_string("activation", "").empty()) continue;
    ir::Value* z = mm->outputs[0];
    if (g.is_output(z)) continue;
    ir::Node* act = only_reader(g, z);
    if (!act) continue;
    const Epilogue epi = epilogue_for(act, half_engine);
    if (epi.name.empty()) continue;
    approximated += epi.approximates ? 1 : 0;
    std::vector<std::string> names = fused_names({mm, act});
    ir::Value* y = act->outputs[0];
    mm->outputs[0] = y;
    y->producer = mm;
    mm->attrs.set("activation", ir::Attribute::from_string(epi.name));
    set_fused_names(*mm, std::move(names));
    removed.push_back(act);
    ++fused;
  }
  if (!fused) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return std::find(removed.begin(), removed.end(), &n) != removed.end(); });
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  ctx.stats["fused_matmul_activation"] += fused;
  if (approximated) ctx.stats["gelu_erf_as_tanh"] += approximated;
  return Status();
}

}  // namespace kiln::passes

// SiLU / Swish fusion: x * Sigmoid(x) becomes one Swish (opset 24, alpha 1), and
// x * HardSigmoid(x, 1/6, 1/2) one HardSwish.
//   s = Sigmoid(x); y = Mul(x, s)  (or Mul(s, x))    becomes   y = Swish(x)
//   h = HardSigmoid(x, alpha=1/6); y = Mul(x, h)     becomes   y = HardSwish(x)
// The Sigmoid's output must be read by the Mul only and not be a graph output. A Conv
// followed by SiLU is left to fuse_conv_activation, which runs first.
#include <cmath>
#include <set>

#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

// Swish is an opset-24 op; the node carries its own opset, the graph's import is left alone.
constexpr int kSwishOpset = 24;
// HardSwish is an opset-14 op.
constexpr int kHardSwishOpset = 14;

bool swish_dtype(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16 || t == DataType::kFloat64;
}

bool hard_swish_gate(const ir::Node& n) {
  return std::fabs(n.attrs.get_float("alpha", 0.2f) - 1.0f / 6.0f) <= 1e-6f &&
         std::fabs(n.attrs.get_float("beta", 0.5f) - 0.5f) <= 1e-6f;
}

}  // namespace

Status fuse_silu(ir::Graph& g, PassContext& ctx) {
  std::set<const ir::Node*> removed;
  int silu = 0, hard = 0;
  std::vector<ir::Node*> gates;
  for (auto& n : g.nodes())
    if (is_onnx_op(n.get(), "Sigmoid", 1) || (is_onnx_op(n.get(), "HardSigmoid", 1) && hard_swish_gate(*n)))
      gates.push_back(n.get());
  for (ir::Node* gate : gates) {
    ir::Value* x = gate->inputs[0];
    ir::Value* s = gate->outputs[0];
    ir::Node* mul = only_reader(g, s);
    if (!is_onnx_op(mul, "Mul", 2) || other_input(mul, s) != x || !swish_dtype(x->dtype)) continue;
    ir::Value* y = mul->outputs[0];
    // Same-shape operands: y has x's rank (unknown dims never compare equal, so compare ranks).
    if (y->dtype != x->dtype || (y->shape && x->shape && y->shape->size() != x->shape->size())) continue;
    const bool sigmoid = gate->op_type == "Sigmoid";
    record_fusion(*mul, {gate, mul});
    // The Mul becomes the fused node: it already sits after x.
    mul->op_type = sigmoid ? "Swish" : "HardSwish";
    mul->opset = std::max(sigmoid ? kSwishOpset : kHardSwishOpset, mul->opset);
    mul->inputs = {x};
    gate->inputs.clear();
    removed.insert(gate);
    ++(sigmoid ? silu : hard);
  }
  if (removed.empty()) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) != 0; });
  g.prune_values();
  if (silu) ctx.stats["fused_silu"] += silu;
  if (hard) ctx.stats["fused_hard_swish"] += hard;
  return Status();
}

}  // namespace kiln::passes

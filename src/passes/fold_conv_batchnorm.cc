// Conv + BatchNormalization folding into the convolution's weights and bias.
//   x -> Conv(W, b) -> BatchNormalization(s, t, mean, var) -> y
//   becomes  x -> Conv(W * s/sqrt(var+eps), (b - mean) * s/sqrt(var+eps) + t) -> y
#include <cmath>

#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {
bool const_float(const ir::Value* v) { return v && v->is_constant() && v->initializer->dtype() == DataType::kFloat32; }
}  // namespace

Status fold_conv_batchnorm(ir::Graph& g, PassContext& ctx) {
  std::vector<const ir::Node*> removed;
  for (auto& bn_ptr : g.nodes()) {
    ir::Node& bn = *bn_ptr;
    if (bn.op_type != "BatchNormalization" || !bn.domain.empty() || bn.inputs.size() < 5) continue;
    if (bn.attrs.get_int("training_mode", 0) != 0) continue;
    if (bn.outputs.size() > 1) {
      bool extra = false;
      for (size_t i = 1; i < bn.outputs.size(); ++i) extra = extra || bn.outputs[i] != nullptr;
      if (extra) continue;
    }
    ir::Value* x = bn.inputs[0];
    if (!x || !x->producer || g.is_output(x)) continue;
    ir::Node& conv = *x->producer;
    if (conv.op_type != "Conv" || !conv.domain.empty() || g.consumers(x).size() != 1) continue;
    ir::Value* w = conv.input(1);
    ir::Value* b = conv.input(2);
    if (!const_float(w) || (b && !const_float(b))) continue;
    bool params_const = true;
    for (size_t i = 1; i < 5; ++i) params_const = params_const && const_float(bn.inputs[i]);
    if (!params_const) continue;
    const Tensor& W = *w->initializer;
    int64_t k = W.rank() > 0 ? W.dim(0) : 0;
    if (k <= 0) continue;
    bool sizes_ok = true;
    for (size_t i = 1; i < 5; ++i) sizes_ok = sizes_ok && bn.inputs[i]->initializer->numel() == k;
    if (b) sizes_ok = sizes_ok && b->initializer->numel() == k;
    if (!sizes_ok) continue;
    float eps = bn.attrs.get_float("epsilon", 1e-5f);
    const float* scale = bn.inputs[1]->initializer->data_as<float>();
    const float* shift = bn.inputs[2]->initializer->data_as<float>();
    const float* mean = bn.inputs[3]->initializer->data_as<float>();
    const float* var = bn.inputs[4]->initializer->data_as<float>();
    Tensor nw = W.clone();
    Tensor nb = Tensor::empty(DataType::kFloat32, {k});
    int64_t per = W.numel() / k;
    for (int64_t o = 0; o < k; ++o) {
      // Computed in double so the folded weights round once.
      double f = static_cast<double>(scale[o]) / std::sqrt(static_cast<double>(var[o]) + eps);
      float* wo = nw.data_as<float>() + o * per;
      for (int64_t j = 0; j < per; ++j) wo[j] = static_cast<float>(wo[j] * f);
      double bias = b ? b->initializer->data_as<float>()[o] : 0.0;
      nb.data_as<float>()[o] = static_cast<float>((bias - mean[o]) * f + shift[o]);
    }
    ir::Value* nwv = g.add_constant(w->name + "_bnfolded", std::move(nw));
    ir::Value* nbv = g.add_constant((b ? b->name : conv.name + "_bias") + "_bnfolded", std::move(nb));
    conv.inputs.resize(3);
    conv.inputs[1] = nwv;
    conv.inputs[2] = nbv;
    // The conv now produces the BN's output directly.
    ir::Value* y = bn.outputs[0];
    conv.outputs[0] = y;
    y->producer = &conv;
    record_fusion(conv, {&conv, &bn});
    removed.push_back(&bn);
  }
  g.remove_nodes_if([&](const ir::Node& n) { return std::find(removed.begin(), removed.end(), &n) != removed.end(); });
  g.prune_values();
  ctx.stats["folded_conv_bn"] += static_cast<int>(removed.size());
  return Status();
}

}  // namespace kiln::passes

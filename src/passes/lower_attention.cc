// ONNX Attention (opset 23+) on CUDA engines: the forms the flash kernel covers
// become kiln FusedAttention, so they run on the GPU instead of the CPU fallback.
//   Y = Attention(Q, K, V [, float mask]; q_num_heads = kv_num_heads = H)   (3-D [B, S, H*D] or 4-D [B, H, S, D])
// becomes
//   Y = FusedAttention(Q, K, V, mask, [0,0,H,-1], [0,0,-1]; views: Reshape + Transpose for 3-D)
// Left alone (the CPU reference runs them): 16-bit-typed graphs, causal or windowed masks, bool masks, a
// mask shorter than the keys, past/present KV caches, nonpad_kv_seqlen, softcap,
// qk_matmul_output, grouped-query heads, head sizes above 128 or unknown.
#include <cmath>

#include "ops/attention/attn_view.h"
#include "passes/attention_node.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

using ops::attn::encode_step;

// present_key, present_value, qk_matmul_output: absent or read by nobody.
bool extra_outputs_unread(const ir::Graph& g, const ir::Node& n) {
  for (size_t i = 1; i < n.outputs.size(); ++i)
    if (!unread(g, n.outputs[i])) return false;
  return true;
}

}  // namespace

Status lower_attention(ir::Graph& g, PassContext& ctx) {
  if (!ctx.config || ctx.config->device() != DeviceType::kCUDA) return Status();
  int lowered = 0;
  std::vector<ir::Node*> nodes;
  for (auto& n : g.nodes())
    if (n->op_type == "Attention" && n->domain.empty()) nodes.push_back(n.get());
  for (ir::Node* n : nodes) {
    const auto& a = n->attrs;
    if (a.get_int("is_causal", 0) || a.get_int("qk_matmul_output_mode", 0) || a.get_float("softcap", 0.f) != 0.f ||
        a.get_int("left_window_size", -1) != -1 || a.get_int("right_window_size", -1) != -1)
      continue;
    if (n->input(4) || n->input(5) || n->input(6) || !extra_outputs_unread(g, *n))
      continue;
    ir::Value *q = n->input(0), *k = n->input(1), *v = n->input(2), *mask = n->input(3);
    // FP32 graphs only (FP16/BF16 engines are still FP32 here, before reduce_precision):
    // the reference rounds 16-bit models' intermediates as ONNX's does, the kernel
    // computes in FP32, and their conformance tolerances would tell the difference.
    if (!q || !k || !v || !q->shape || !k->shape || !v->shape || q->dtype != DataType::kFloat32 ||
        k->dtype != q->dtype || v->dtype != q->dtype)
      continue;
    const size_t rank = q->shape->size();
    if ((rank != 3 && rank != 4) || k->shape->size() != rank || v->shape->size() != rank) continue;
    int64_t heads = 0, kv_heads = 0, dk = -1, dv = -1;
    if (rank == 3) {
      heads = a.get_int("q_num_heads", 0), kv_heads = a.get_int("kv_num_heads", 0);
      if (heads <= 0 || heads != kv_heads) continue;
      const Dim &qe = (*q->shape)[2], &ve = (*v->shape)[2];
      if (!qe.known() || !ve.known() || qe.value % heads || ve.value % heads) continue;
      dk = qe.value / heads, dv = ve.value / heads;
    } else {
      const Dim &hq = (*q->shape)[1], &hk = (*k->shape)[1];
      if (!hq.known() || !hk.known() || hq.value != hk.value) continue;
      dk = (*q->shape)[3].known() ? (*q->shape)[3].value : -1;
      dv = (*v->shape)[3].known() ? (*v->shape)[3].value : -1;
    }
    if (dk <= 0 || dv <= 0 || dk > 128 || dv > 128) continue;
    // A float mask that covers every key (the kernel has no "short mask = masked" rule).
    if (mask) {
      const Dim& sk = (*k->shape)[rank == 3 ? 1 : 2];
      if (!mask->shape || mask->shape->empty() || mask->shape->size() > 4 || mask->dtype != q->dtype) continue;
      const Dim& ml = mask->shape->back();
      if (!ml.known() || (ml.value != 1 && !(sk.known() && sk.value == ml.value))) continue;
    }
    const double scale = a.has("scale") ? a.get_float("scale", 1.f) : 1.0 / std::sqrt(static_cast<double>(dk));

    std::vector<ir::Value*> inputs = {q, k, v, mask};
    std::vector<int64_t> qv, kv, vv, ov;
    if (rank == 3) {
      ir::Value* split = g.add_constant(n->name + "_heads",
                                        Tensor::from_vector<int64_t>(DataType::kInt64, {4}, {0, 0, heads, -1}));
      ir::Value* merge =
          g.add_constant(n->name + "_merge", Tensor::from_vector<int64_t>(DataType::kInt64, {3}, {0, 0, -1}));
      inputs.push_back(split);  // slot 4
      inputs.push_back(merge);  // slot 5
      for (auto* code : {&qv, &kv, &vv}) {
        encode_step(*code, ops::attn::kReshape, {4, 0});
        encode_step(*code, ops::attn::kTranspose, {0, 2, 1, 3});
      }
      encode_step(ov, ops::attn::kTranspose, {0, 2, 1, 3});
      encode_step(ov, ops::attn::kReshape, {5, 0});
    }
    ir::Value* y = n->outputs[0];
    // ONNX: a fully masked row gives zeros.
    FusedAttentionSpec spec{inputs, scale, qv, kv, vv, ov, {}, /*zero_masked_rows=*/true};
    ir::Node* f = add_fused_attention(g, spec, y, n->name.empty() ? "Attention" : n->name);
    record_fusion(*f, {n});
    n->outputs.clear();
    n->inputs.clear();
    ++lowered;
  }
  if (!lowered) return Status();
  g.remove_nodes_if([](const ir::Node& n) { return n.op_type == "Attention" && n.outputs.empty(); });
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  g.opset_imports.emplace("kiln", 1);
  ctx.stats["lowered_attention"] += lowered;
  return Status();
}

}  // namespace kiln::passes

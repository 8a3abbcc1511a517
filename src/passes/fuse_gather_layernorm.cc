// Embedding + LayerNorm fusion (CUDA engines): a SkipLayerNormalization whose input is a
// Gather of a table's rows reads those rows itself, so the gathered tensor is never
// written and re-read, and one kernel launch goes.
//   e = Gather(table, ids); y = SkipLayerNormalization(e, skip, gamma, beta)
// becomes
//   y = GatherSkipLayerNormalization(table, ids, skip, gamma, beta)        (kiln)
// (BERT's embeddings: the word embeddings gathered by input_ids; fuse_skip_layernorm has
// folded the position and token-type embeddings into the constant skip.)
// The Gather is on axis 0 of a rank-2 float table with int32/int64 ids; e is read by the
// SkipLayerNormalization alone and is no graph output; the SkipLayerNormalization has no
// bias input and only its first output is read.
#include <set>

#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

Status fuse_gather_layernorm(ir::Graph& g, PassContext& ctx) {
  const BuilderConfig* cfg = ctx.config;
  if (!cfg || cfg->device() != DeviceType::kCUDA) return Status();
  std::set<const ir::Node*> removed;
  for (auto& n : g.nodes()) {
    ir::Node* sln = n.get();
    if (sln->op_type != "SkipLayerNormalization" || sln->domain != "com.microsoft") continue;
    if (sln->inputs.size() < 3 || sln->inputs.size() > 4 || sln->outputs.empty() || !sln->outputs[0]) continue;
    bool others_read = false;
    for (size_t i = 1; i < sln->outputs.size(); ++i) others_read = others_read || !unread(g, sln->outputs[i]);
    if (others_read) continue;
    ir::Value* e = sln->input(0);
    ir::Node* gather = e ? e->producer : nullptr;
    if (!is_onnx_op(gather, "Gather", 2) || gather->attrs.get_int("axis", 0) != 0 || removed.count(gather)) continue;
    if (only_reader(g, e) != sln || g.is_output(e) || captured(g, e)) continue;
    ir::Value* table = gather->input(0);
    ir::Value* ids = gather->input(1);
    if (!table || !ids || !table->shape || table->shape->size() != 2 || table->dtype != e->dtype) continue;
    if (ids->dtype != DataType::kInt32 && ids->dtype != DataType::kInt64) continue;
    const std::vector<std::string> from = fused_names({gather, sln});
    sln->op_type = "GatherSkipLayerNormalization";
    sln->domain = "kiln";
    sln->opset = 1;
    std::vector<ir::Value*> ins = {table, ids};
    ins.insert(ins.end(), sln->inputs.begin() + 1, sln->inputs.end());
    sln->inputs = std::move(ins);
    for (size_t i = 1; i < sln->outputs.size(); ++i)
      if (sln->outputs[i]) sln->outputs[i]->producer = nullptr;
    sln->outputs.resize(1);
    set_fused_names(*sln, from);
    e->producer = nullptr;
    gather->inputs.clear();
    removed.insert(gather);
  }
  if (removed.empty()) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) != 0; });
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  g.opset_imports.emplace("kiln", 1);
  ctx.stats["fused_gather_layernorm"] += static_cast<int>(removed.size());
  return Status();
}

}  // namespace kiln::passes

// Where over a cast-to-bool condition (CUDA engines): the Cast goes, and the Where reads
// the numbers it cast, as kiln's WhereNonzero (c != 0 ? x : y): one kernel instead of two,
// and the bool tensor is never written.
//   b = Cast(m, to = bool); y = Where(b, x, z)                   becomes   y = WhereNonzero(m, x, z)
//   b = Cast(m, to = bool); v = Reshape(b, s); y = Where(v, x, z)  becomes   y = WhereNonzero(Reshape(m, s), x, z)
// (transformers' attention masks: the int64 attention_mask cast to bool, viewed as
// [B, 1, 1, S], selects 0 or the dtype's lowest value.) Between the Cast and the Where
// may sit Reshape / Unsqueeze / Squeeze / Flatten nodes (dtype-agnostic views; they then
// view m); each link is read only by the next and is no graph output. m is an integer or
// bool tensor (a float's "!= 0" would differ from the Cast where reduce_precision rounds).
#include <set>
#include <vector>

#include "ops/select/where_nonzero.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

bool is_view(const ir::Node* n) {
  return n && n->domain.empty() && n->outputs.size() == 1 &&
         (n->op_type == "Reshape" || n->op_type == "Unsqueeze" || n->op_type == "Squeeze" || n->op_type == "Flatten");
}

}  // namespace

Status fuse_where_cast(ir::Graph& g, PassContext& ctx) {
  const BuilderConfig* cfg = ctx.config;
  if (!cfg || cfg->device() != DeviceType::kCUDA) return Status();
  std::set<const ir::Node*> removed;
  int fused = 0;
  for (auto& n : g.nodes()) {
    ir::Node* where = n.get();
    if (!is_onnx_op(where, "Where", 3)) continue;
    // Walk up from the condition through single-reader views to a Cast to bool.
    std::vector<ir::Node*> views;  // nearest the Where first
    ir::Value* v = where->inputs[0];
    while (v && is_view(v->producer) && only_reader(g, v) == (views.empty() ? where : views.back())) {
      views.push_back(v->producer);
      v = views.back()->input(0);
    }
    ir::Node* cast = v ? v->producer : nullptr;
    if (!is_onnx_op(cast, "Cast", 1) || removed.count(cast)) continue;
    if (cast->attrs.get_int("to", 0) != static_cast<int64_t>(DataType::kBool)) continue;
    if (only_reader(g, v) != (views.empty() ? where : views.back())) continue;
    ir::Value* m = cast->inputs[0];
    if (!ops::nonzero_condition_dtype(m->dtype)) continue;
    // The views now view m: the same shapes, m's dtype.
    ir::Node* first = views.empty() ? where : views.back();
    for (ir::Value*& in : first->inputs)
      if (in == v) in = m;
    for (ir::Node* view : views) view->outputs[0]->dtype = m->dtype;
    where->op_type = "WhereNonzero";
    where->domain = "kiln";
    where->opset = 1;
    set_fused_names(*where, fused_names({cast, where}));
    v->producer = nullptr;
    cast->inputs.clear();
    removed.insert(cast);
    ++fused;
  }
  if (removed.empty()) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) != 0; });
  g.prune_values();
  g.opset_imports.emplace("kiln", 1);
  ctx.stats["fused_where_cast"] += fused;
  return Status();
}

}  // namespace kiln::passes

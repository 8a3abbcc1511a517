// Slices that a Concat puts back together: a run of adjacent Concat inputs that slice one
// tensor along the Concat's axis, in order and covering its whole extent, is that tensor.
//   a = Slice(t, [0], [c], [1]); b = Slice(t, [c], [2c], [1])
//   y = Concat(a, b, m, axis=1)                  becomes   y = Concat(t, m, axis=1)
// (YOLOv8's C2f exports `cv1(x).chunk(2, 1)` ... `torch.cat(y, 1)` this way: the first half
// is read only by the Concat, so its Slice, a copy kernel per C2f, goes with
// eliminate_dead_nodes; b keeps its other readers.) Only opset-10+ Slices with constant
// starts/ends/axes/steps, one axis, step 1, and a known dim of t along it; a run that covers
// part of t stays as it is.
#include <algorithm>
#include <cstdint>

#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

// The [begin, end) range a one-axis, step-1 Slice takes of its input along `axis`
// (normalized), clamped to the input's known extent there.
struct Range {
  ir::Value* of = nullptr;
  int64_t begin = 0, end = 0, extent = 0;
};

bool slice_range(const ir::Value* v, int64_t axis, Range& r) {
  const ir::Node* p = v ? v->producer : nullptr;
  int64_t a = 0, b = 0, e = 0;
  if (!one_axis_slice(p, a, b, e) || p->outputs.size() != 1 || a != axis) return false;
  ir::Value* t = p->inputs[0];
  r = Range{t, b, e, (*t->shape)[static_cast<size_t>(a)].value};
  return true;
}

}  // namespace

Status merge_concat_slices(ir::Graph& g, PassContext& ctx) {
  int merged = 0;
  for (auto& node : g.nodes()) {
    if (!node->domain.empty() || node->op_type != "Concat" || node->outputs.size() != 1 || !node->outputs[0] ||
        !node->outputs[0]->shape)
      continue;
    const int64_t rank = static_cast<int64_t>(node->outputs[0]->shape->size());
    int64_t axis = node->attrs.get_int("axis", 0);
    if (axis < 0) axis += rank;
    std::vector<ir::Value*> inputs;
    bool changed = false;
    for (size_t i = 0; i < node->inputs.size();) {
      Range first;
      if (!slice_range(node->inputs[i], axis, first) || first.begin != 0) {
        inputs.push_back(node->inputs[i++]);
        continue;
      }
      // Extend the run while the next input slices the same tensor where this one ended.
      size_t j = i + 1;
      int64_t reached = first.end;
      Range next;
      while (j < node->inputs.size() && reached < first.extent && slice_range(node->inputs[j], axis, next) &&
             next.of == first.of && next.begin == reached) {
        reached = next.end;
        ++j;
      }
      if (j - i >= 2 && reached == first.extent) {
        inputs.push_back(first.of);
        changed = true;
        i = j;
      } else {
        inputs.push_back(node->inputs[i++]);
      }
    }
    // (A Concat left with one input would copy t: rare, and no better than before.)
    if (!changed || inputs.size() < 2) continue;
    node->inputs = inputs;
    ++merged;
  }
  g.prune_values();
  ctx.stats["merged_concat_slices"] += merged;
  return Status();
}

}  // namespace kiln::passes

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
  if (!p || !p->domain.empty() || p->op_type != "Slice" || p->inputs.size() < 3 || p->outputs.size() != 1) return false;
  ir::Value* t = p->inputs[0];
  if (!t || !t->shape) return false;
  const int64_t rank = static_cast<int64_t>(t->shape->size());
  std::vector<int64_t> starts, ends, axes{0}, steps{1};
  if (!constant_ints(p->inputs[1], starts) || !constant_ints(p->inputs[2], ends) || starts.size() != 1 ||
      ends.size() != 1)
    return false;
  if (p->inputs.size() > 3 && p->inputs[3] && !constant_ints(p->inputs[3], axes)) return false;
  if (p->inputs.size() > 4 && p->inputs[4] && !constant_ints(p->inputs[4], steps)) return false;
  if (axes.size() != 1 || steps.size() != 1 || steps[0] != 1) return false;
  const int64_t a = axes[0] < 0 ? axes[0] + rank : axes[0];
  if (a != axis || a < 0 || a >= rank) return false;
  const Dim& d = (*t->shape)[static_cast<size_t>(a)];
  if (!d.known()) return false;
  auto clamp = [&](int64_t x) {
    if (x < 0) x += d.value;
    return std::min(std::max<int64_t>(x, 0), d.value);
  };
  r = Range{t, clamp(starts[0]), clamp(ends[0]), d.value};
  return r.begin < r.end;
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

// Attention masks in their smallest broadcast form: a FusedAttention's mask that is an
// elementwise chain over a broadcast reads the chain computed before the broadcast
// (FusedAttention broadcasts its mask itself).
//   pad [B,1,1,S] -> And(true [1,1,S,1], .) -> Expand [B,1,S,S] -> Where(., 0, min) -> FusedAttention.mask
// becomes
//   pad [B,1,1,S] -> Where(., 0, min) [B,1,1,S] -> FusedAttention.mask
// (transformers' eager mask for BERT: the padding mask And-ed with an all-true
// "bidirectional" [1,1,S,1] and expanded to [B,1,S,S]. The kernel then reads one mask row
// per (batch, head) instead of a tile per query block: 16 KB less shared memory a block.)
// Rules, each keeping "equal after broadcasting to the original shape": Expand(x) -> x;
// And/Or with a constant that is all true/all false -> the other side; Where(c, x, y) and
// Cast(c) over a shrunk c are rebuilt on it when the rebuilt output is smaller.
#include <algorithm>
#include <map>
#include <optional>
#include <vector>

#include "ops/common.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {
namespace {

// A bool constant whose every element is `want`.
bool all_bool(const ir::Value* v, bool want) {
  if (!v || !v->initializer || v->initializer->dtype() != DataType::kBool) return false;
  const Tensor& t = *v->initializer;
  for (int64_t i = 0; i < t.numel(); ++i)
    if ((t.get_as_double(i) != 0) != want) return false;
  return true;
}

// Elements of a shape, or -1 when a dim is not known.
int64_t known_numel(const Shape& s) {
  int64_t n = 1;
  for (const Dim& d : s) {
    if (!d.known()) return -1;
    n *= d.value;
  }
  return n;
}

// Whether a is strictly smaller than b, where a broadcasts to b: a dim of 1 where b's is not.
bool smaller(const Shape& a, const Shape& b) {
  const int64_t na = known_numel(a), nb = known_numel(b);
  if (na >= 0 && nb >= 0) return na < nb;
  const size_t off = b.size() - std::min(a.size(), b.size());
  for (size_t i = 0; i < b.size(); ++i) {
    const bool a_one = i < off || (a[i - off].known() && a[i - off].value == 1);
    const bool b_one = b[i].known() && b[i].value == 1;
    if (a_one && !b_one) return true;
  }
  return false;
}

struct Shrinker {
  ir::Graph& g;
  // Shapes at the first profile's opt dims, for whether a rewrite is smaller where the
  // symbolic ones cannot say (a dynamic batch: the padding mask comes through a Reshape
  // to computed dims, [?,?,?,?], though it is [B,1,1,S] at every B). The rewrite itself
  // is exact at any dims: FusedAttention broadcasts its mask.
  Propagation opt;
  std::map<const ir::Value*, ir::Value*> memo;

  bool smaller_value(const ir::Value* a, const ir::Value* b) const {
    if (a->shape && b->shape && smaller(*a->shape, *b->shape)) return true;
    const Shape *sa = opt_shape(a, opt), *sb = opt_shape(b, opt);
    return sa && sb && smaller(*sa, *sb);
  }

  // A value equal to v once broadcast to v's shape, as small as the rules make it (v itself
  // when none applies).
  ir::Value* shrink(ir::Value* v, int depth = 0) {
    if (!v || !v->shape || depth > 16) return v;
    auto it = memo.find(v);
    if (it != memo.end()) return it->second;
    ir::Value* r = v;
    const ir::Node* p = v->producer;
    if (p && !p->outputs.empty() && p->outputs[0] == v) {
      const std::string& op = p->op_type;
      if (op == "Expand" && p->inputs.size() == 2 && p->inputs[0] && p->inputs[0]->dtype == v->dtype) {
        r = shrink(p->inputs[0], depth + 1);
      } else if ((op == "And" || op == "Or") && p->inputs.size() == 2) {
        const bool neutral = op == "And";  // And with all-true, Or with all-false: the other side
        if (all_bool(p->inputs[0], neutral)) r = shrink(p->inputs[1], depth + 1);
        if (r == v && all_bool(p->inputs[1], neutral)) r = shrink(p->inputs[0], depth + 1);
      } else if ((op == "Where" && p->inputs.size() == 3) || (op == "Cast" && p->inputs.size() == 1)) {
        r = rebuild(*p, v, depth);
      }
    }
    if (r != v && (!r->shape || !smaller_value(r, v))) r = v;
    memo[v] = r;
    return r;
  }

  // p (Where or Cast) over its first input shrunk, when that makes the output smaller.
  ir::Value* rebuild(const ir::Node& p, ir::Value* v, int depth) {
    ir::Value* c = shrink(p.inputs[0], depth + 1);
    if (c == p.inputs[0]) return v;
    std::vector<const Shape*> shapes;
    std::vector<ir::Value*> ins = p.inputs;
    ins[0] = c;
    for (const ir::Value* in : ins) {
      if (!in || !in->shape) return v;
      shapes.push_back(&*in->shape);
    }
    std::optional<Shape> out = ops::broadcast_shapes(shapes);
    if (!out) return v;
    // The rebuilt output at the opt dims (where the symbolic dims cannot tell).
    std::optional<Shape> out_opt;
    std::vector<const Shape*> at_opt;
    for (const ir::Value* in : ins) at_opt.push_back(opt_shape(in, opt));
    if (std::find(at_opt.begin(), at_opt.end(), nullptr) == at_opt.end()) out_opt = ops::broadcast_shapes(at_opt);
    const Shape* v_opt = opt_shape(v, opt);
    if (!smaller(*out, *v->shape) && !(out_opt && v_opt && smaller(*out_opt, *v_opt))) return v;
    ir::Value* o = g.add_unique_value(v->name + "_unexpanded", v->dtype);
    o->shape = *out;
    if (out_opt) opt.types[o] = {v->dtype, *out_opt};
    ir::Node* n = g.add_node(p.op_type, ins, {o}, g.unique_name(p.name + "_unexpanded"));
    n->domain = p.domain;
    n->opset = p.opset;
    n->attrs = p.attrs;
    return o;
  }
};

}  // namespace

Status shrink_attention_masks(ir::Graph& g, PassContext& ctx) {
  std::vector<ir::Node*> attention;  // (shrinking adds nodes: collect first)
  for (auto& np : g.nodes())
    if (np->op_type == "FusedAttention" && np->domain == "kiln" && np->inputs.size() > 3 && np->inputs[3])
      attention.push_back(np.get());
  Shrinker s{g, ctx.config ? opt_types(g, *ctx.config) : Propagation{}, {}};
  int shrunk = 0;
  for (ir::Node* n : attention) {
    ir::Value* m = n->inputs[3];
    ir::Value* r = s.shrink(m);
    if (r == m || r->shape->size() > 4) continue;
    n->inputs[3] = r;
    ++shrunk;
  }
  if (!shrunk) return Status();
  KILN_RETURN_IF_ERROR(g.topo_sort());
  ctx.stats["shrunk_attention_masks"] += shrunk;
  return eliminate_dead_nodes(g, ctx);
}

}  // namespace kiln::passes

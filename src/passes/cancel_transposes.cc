// Transpose / Reshape / Squeeze cancellation: layout ops that undo or repeat each other collapse.
//   Transpose(p2, Transpose(p1, x)) -> Transpose(p1[p2], x), removed when that is the identity
//   Reshape(Reshape(x, s1), s2) -> Reshape(x, s2)    (s2 constant, without 0s unless allowzero;
//                                                     also after a Flatten, Squeeze or Unsqueeze)
//   Squeeze(Unsqueeze(x, a), a), Unsqueeze(Squeeze(x, a), a) -> x
//   Transpose(p, x) moving only size-1 dims -> Reshape(x, ...)  (free: the memory planner aliases it)
//   Transpose(p2, Reshape(Transpose(p1, x), s)) that keeps x's element order -> Reshape(x, ...)
//     (the Reshape merging dims the first Transpose brought together: a PyTorch patch embedding's
//     conv output [B, 768, 14, 14] -> flatten(2) -> transpose(1, 2) after patchify_conv made the
//     conv a GEMM whose [B, 14, 14, 768] rows were transposed to NCHW: two copies of 77 MB at
//     ViT-B/16 bs256, now none)
// Only intermediates read by nothing else (and not graph outputs) disappear; a result that is a
// graph output keeps its name through an Identity.
#include <set>

#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

bool is(const ir::Node* n, const char* op) {
  return n && n->op_type == op && n->domain.empty() && !n->inputs.empty() && n->inputs[0] && n->outputs.size() == 1 &&
         n->outputs[0];
}

std::optional<int64_t> rank_of(const ir::Value* v) {
  if (!v || !v->shape) return std::nullopt;
  return static_cast<int64_t>(v->shape->size());
}

// The permutation of a Transpose (default: reversed dims), or empty when unknown or invalid.
std::vector<int64_t> perm_of(const ir::Node& n) {
  std::vector<int64_t> p = n.attrs.get_ints("perm");
  if (!n.attrs.has("perm")) {
    auto r = rank_of(n.inputs[0]);
    if (!r) return {};
    for (int64_t i = *r - 1; i >= 0; --i) p.push_back(i);
  }
  std::vector<bool> seen(p.size(), false);
  for (int64_t v : p) {
    if (v < 0 || v >= static_cast<int64_t>(p.size()) || seen[v]) return {};
    seen[v] = true;
  }
  return p;
}

bool is_identity(const std::vector<int64_t>& p) {
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] != static_cast<int64_t>(i)) return false;
  return true;
}

// Squeeze / Unsqueeze axes normalized for rank `rank`, sorted; empty when unknown or out of range.
std::vector<int64_t> axes_of(const ir::Node& n, int64_t rank) {
  std::vector<int64_t> a;
  if (n.opset < 13) {
    if (!n.attrs.has("axes")) return {};
    a = n.attrs.get_ints("axes");
  } else if (!constant_ints(n.input(1), a)) {
    return {};
  }
  for (int64_t& x : a) {
    if (x < -rank || x >= rank) return {};
    if (x < 0) x += rank;
  }
  std::sort(a.begin(), a.end());
  if (std::adjacent_find(a.begin(), a.end()) != a.end()) return {};
  return a;
}

// A Reshape target equal to Transpose(p) of `s`, when p keeps the order of every dim that is not
// a known 1. Unknown dims in place become 0 (copy), one moved unknown dim becomes -1.
bool reshape_target(const Shape& s, const std::vector<int64_t>& p, std::vector<int64_t>& target) {
  int64_t last_big = -1;
  bool inferred = false;
  target.clear();
  for (size_t i = 0; i < p.size(); ++i) {
    const Dim& d = s[p[i]];
    if (d.known() && d.value == 0) return false;  // 0 would mean "copy" in the target
    if (!(d.known() && d.value == 1)) {
      if (p[i] < last_big) return false;
      last_big = p[i];
    }
    if (d.known()) {
      target.push_back(d.value);
    } else if (p[i] == static_cast<int64_t>(i)) {
      target.push_back(0);
    } else {
      if (inferred) return false;
      inferred = true;
      target.push_back(-1);
    }
  }
  return true;
}

// Dims that are surely equal: the same known value or the same symbol (two anonymous
// unknowns may differ).
bool same_dim(const Dim& a, const Dim& b) {
  if (a.known() || b.known()) return a.known() && b.known() && a.value == b.value;
  return !a.name.empty() && a.name == b.name;
}

// Each dim of a tensor derived from x by transposes and merging reshapes, as the ordered
// list of x's dims ("atoms") it is made of.
using Groups = std::vector<std::vector<int64_t>>;

// The groups after a Reshape from `from` to `to` that only merges adjacent dims (or keeps
// them); false for splits and for unknown dims that do not stay whole.
bool merge_groups(const Groups& g, const Shape& from, const Shape& to, Groups& out) {
  out.clear();
  size_t i = 0;
  for (const Dim& t : to) {
    std::vector<int64_t> atoms;
    if (i < from.size() && same_dim(from[i], t) && !(t.known() && t.value == 1)) {
      atoms = g[i++];  // kept whole (the only way an unknown dim passes)
    } else if (t.known()) {
      int64_t prod = 1;
      while (i < from.size() && prod < t.value) {
        if (!from[i].known()) return false;
        prod *= from[i].value;
        atoms.insert(atoms.end(), g[i].begin(), g[i].end());
        ++i;
      }
      if (prod != t.value) return false;
    } else {
      return false;
    }
    out.push_back(std::move(atoms));
  }
  // Trailing dims of size 1 the target dropped carry no order.
  for (; i < from.size(); ++i)
    if (!(from[i].known() && from[i].value == 1)) return false;
  return true;
}

struct Canceller {
  ir::Graph& g;
  PassContext& ctx;
  std::set<const ir::Node*> removed;
  std::set<std::string> captured;  // values subgraphs read by name: never renamed away

  bool internal(const ir::Value* v, const ir::Node* reader) const {
    return only_reader(g, v) == reader && !captured.count(v->name);
  }

  void remove(ir::Node* n) {
    n->inputs.clear();  // so later matches do not count it as a reader
    removed.insert(n);
  }

  // n's output becomes x: n disappears, or becomes an Identity when its output must keep its name.
  void forward(ir::Node* n, ir::Value* x) {
    ir::Value* out = n->outputs[0];
    if (g.is_output(out) || captured.count(out->name)) {
      const ir::Attribute* from = n->attrs.find(kFusedFromAttr);
      ir::Attributes attrs;
      if (from) attrs.set(kFusedFromAttr, *from);
      n->op_type = "Identity";
      n->inputs = {x};
      n->attrs = attrs;
      return;
    }
    g.replace_uses(out, x);
    remove(n);
  }

  // n = Transpose(p2, Reshape(Transpose(p1, x), s)) whose output is x's elements in x's order:
  // n becomes Reshape(x, its own output's dims). Every link read only by the next.
  bool reshape_chain(ir::Node* n, const std::vector<int64_t>& p2) {
    ir::Value* y = n->inputs[0];
    ir::Node* r = y->producer;
    if (!is(r, "Reshape") || r->inputs.size() != 2 || removed.count(r) || !internal(y, n)) return false;
    ir::Value* z = r->inputs[0];
    ir::Node* t1 = z->producer;
    if (!is(t1, "Transpose") || t1->inputs.size() != 1 || removed.count(t1) || !internal(z, r)) return false;
    ir::Value* x = t1->inputs[0];
    const ir::Value* out = n->outputs[0];
    std::vector<int64_t> p1 = perm_of(*t1);
    if (p1.empty() || !x->shape || !z->shape || !y->shape || !out->shape || x->shape->size() != p1.size() ||
        y->shape->size() != p2.size())
      return false;
    Groups g1, g2, g3;
    for (int64_t a : p1) g1.push_back({a});
    if (!merge_groups(g1, *z->shape, *y->shape, g2)) return false;
    for (int64_t a : p2) g3.push_back(g2[static_cast<size_t>(a)]);
    // x's order: the atoms in sequence, size-1 dims anywhere.
    const Shape& xs = *x->shape;
    int64_t last = -1;
    for (const auto& grp : g3)
      for (int64_t a : grp) {
        if (xs[a].known() && xs[a].value == 1) continue;
        if (a < last) return false;
        last = a;
      }
    // The target: known dims; an unknown one that is x's dim at the same place copies it (0);
    // at most one other unknown is inferred (-1).
    std::vector<int64_t> target;
    bool inferred = false;
    for (size_t i = 0; i < out->shape->size(); ++i) {
      const Dim& d = (*out->shape)[i];
      if (d.known()) {
        if (d.value == 0) return false;
        target.push_back(d.value);
      } else if (g3[i].size() == 1 && g3[i][0] == static_cast<int64_t>(i)) {
        target.push_back(0);
      } else if (!inferred) {
        inferred = true;
        target.push_back(-1);
      } else {
        return false;
      }
    }
    record_fusion(*n, {t1, r, n});
    n->op_type = "Reshape";
    n->opset = std::max(n->opset, 13);
    n->attrs.erase("perm");
    const auto rank = static_cast<int64_t>(target.size());
    n->inputs = {x, g.add_constant(n->name + "_shape", Tensor::from_vector<int64_t>(DataType::kInt64, {rank}, target))};
    remove(r);
    remove(t1);
    ++ctx.stats["transpose_reshape_chains_to_reshape"];
    return true;
  }

  void transpose(ir::Node* n) {
    std::vector<int64_t> p = perm_of(*n);
    if (p.empty()) return;
    if (reshape_chain(n, p)) return;
    ir::Value* y = n->inputs[0];
    ir::Node* t1 = y->producer;
    if (is(t1, "Transpose") && !removed.count(t1) && internal(y, n)) {
      std::vector<int64_t> p1 = perm_of(*t1);
      if (p1.size() == p.size()) {
        std::vector<int64_t> q(p.size());
        for (size_t i = 0; i < p.size(); ++i) q[i] = p1[p[i]];
        record_fusion(*n, {t1, n});
        n->inputs[0] = t1->inputs[0];
        n->attrs.set("perm", ir::Attribute::from_ints(q));
        remove(t1);
        p = q;
        ++ctx.stats["merged_transposes"];
      }
    }
    ir::Value* x = n->inputs[0];
    if (is_identity(p)) {
      forward(n, x);
      ++ctx.stats["cancelled_transposes"];
      return;
    }
    std::vector<int64_t> target;
    if (!x->shape || x->shape->size() != p.size() || !reshape_target(*x->shape, p, target)) return;
    n->op_type = "Reshape";
    n->opset = std::max(n->opset, 13);
    n->attrs.erase("perm");
    const auto r = static_cast<int64_t>(target.size());
    n->inputs = {x, g.add_constant(n->name + "_shape", Tensor::from_vector<int64_t>(DataType::kInt64, {r}, target))};
    ++ctx.stats["transposes_to_reshape"];
  }

  void reshape(ir::Node* n) {
    ir::Value* y = n->inputs[0];
    ir::Node* r1 = y->producer;
    std::vector<int64_t> s2;
    const bool reshape_like = is(r1, "Reshape") || is(r1, "Flatten") || is(r1, "Squeeze") || is(r1, "Unsqueeze");
    if (!reshape_like || removed.count(r1) || !internal(y, n) || !constant_ints(n->input(1), s2)) return;
    // A 0 copies the dim of the Reshape's own input, which is y's, not x's.
    if (n->attrs.get_int("allowzero", 0) == 0 && std::find(s2.begin(), s2.end(), 0) != s2.end()) return;
    record_fusion(*n, {r1, n});
    n->inputs[0] = r1->inputs[0];
    remove(r1);
    ++ctx.stats["merged_reshapes"];
  }

  // Squeeze(Unsqueeze(x, a), a) or Unsqueeze(Squeeze(x, a), a).
  void squeeze_pair(ir::Node* n) {
    const bool squeeze = n->op_type == "Squeeze";
    ir::Value* y = n->inputs[0];
    ir::Node* first = y->producer;
    if (!is(first, squeeze ? "Unsqueeze" : "Squeeze") || removed.count(first) || !internal(y, n)) return;
    // Both axis lists index the larger rank: y's for Unsqueeze -> Squeeze, x's for Squeeze -> Unsqueeze.
    auto rank = rank_of(squeeze ? y : first->inputs[0]);
    if (!rank) return;
    std::vector<int64_t> a1 = axes_of(*first, *rank), a2 = axes_of(*n, *rank);
    if (a1.empty() || a1 != a2) return;
    ir::Value* x = first->inputs[0];
    remove(first);
    forward(n, x);
    ++ctx.stats["cancelled_squeezes"];
  }
};

}  // namespace

Status cancel_transposes(ir::Graph& g, PassContext& ctx) {
  Canceller c{g, ctx, {}, {}};
  for (auto& n : g.nodes())
    for (auto& [k, a] : n->attrs.all()) {
      if (a.g)
        for (auto& s : a.g->outer_references()) c.captured.insert(s);
      for (auto& sg : a.graphs)
        for (auto& s : sg->outer_references()) c.captured.insert(s);
    }
  for (auto& node : g.nodes()) {
    ir::Node* n = node.get();
    if (c.removed.count(n)) continue;
    if (is(n, "Transpose") && n->inputs.size() == 1)
      c.transpose(n);
    else if (is(n, "Reshape") && n->inputs.size() == 2 && n->inputs[1])
      c.reshape(n);
    else if (is(n, "Squeeze") || is(n, "Unsqueeze"))
      c.squeeze_pair(n);
  }
  if (c.removed.empty()) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return c.removed.count(&n) != 0; });
  g.prune_values();
  return Status();
}

}  // namespace kiln::passes

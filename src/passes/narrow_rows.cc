// Row narrowing: where a Gather or Slice keeps a few rows of a tensor along one axis, the
// row-wise ops that computed the tensor compute only those rows.
//   y = LayerNormalization(x)                       x0 = Slice(x, starts=[0], ends=[1], axes=[1])
//   t = Gather(y, indices=0, axis=1)     becomes    y0 = LayerNormalization(x0)
//                                                    t = Gather(y0, indices=0, axis=1)
// ViT classifies from the class token alone (`x[:, 0]` after the encoder), so the last
// block's out-projection, MLP and LayerNorms run on 1 of its 197 tokens and its attention on
// one query row (K and V still cover every token: the QKV GEMM stays whole).
//
// The demand for rows is worked out backwards. A value's rows along one axis are needed
// where every reader needs only some: a Gather with constant indices or a one-axis Slice
// (the demand's origins), or a row-wise op whose own output is narrowed. The rows are the
// hull of what the readers ask for. Row-wise, along axis a of the output, are:
//   - elementwise ops, broadcasting (an input with size 1, or no axis, there stays whole);
//   - LayerNormalization normalizing axes after a, Softmax / LogSoftmax and Reduce* (dims
//     kept) over other axes;
//   - MatMul along A's rows or a batch axis, Gemm along A's rows;
//   - Transpose, Squeeze / Unsqueeze, and Gather / Slice / Concat along other axes;
//   - Reshape where the rows stay a contiguous block of one input axis within each block of
//     the outer axes (all dims known: the narrowed target shape is a new constant).
// A graph output, a value that a subgraph reads, or one that any other op reads stays whole.
// Forward, each narrowed node reads its inputs' rows: a narrowed producer's output as it is,
// or a new Slice (rebased when the producer kept a larger range); origins rebase their
// indices. Everything is computed from the shapes before the rewrite; infer_shapes runs at
// the end. Numerics do not change: the same ops run on fewer rows.
#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <tuple>

#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

// The rows of one value that its readers need.
struct Rows {
  enum Kind { kUnset, kFull, kPart } kind = kUnset;
  int64_t axis = 0, begin = 0, end = 0;
  static Rows full() { return Rows{kFull}; }
  static Rows part(int64_t axis, int64_t b, int64_t e) { return Rows{kPart, axis, b, e}; }
  bool same_range(const Rows& o) const { return axis == o.axis && begin == o.begin && end == o.end; }
};

void merge(Rows& into, const Rows& r) {
  if (into.kind == Rows::kFull || r.kind == Rows::kUnset) return;
  if (into.kind == Rows::kUnset || r.kind == Rows::kFull) {
    into = r;
    return;
  }
  if (into.axis != r.axis) {
    into = Rows::full();
    return;
  }
  into.begin = std::min(into.begin, r.begin);
  into.end = std::max(into.end, r.end);
}

bool onnx_domain(const ir::Node& n) { return n.domain.empty() || n.domain == "ai.onnx"; }

// Known dims of v (false when v has no shape or a dim is not known).
bool known_dims(const ir::Value* v, std::vector<int64_t>& d) {
  if (!v || !v->shape || !shape_is_concrete(*v->shape)) return false;
  d = shape_to_dims(*v->shape);
  return true;
}

// An axis attribute counted from the back made non-negative.
int64_t norm(int64_t axis, int64_t rank) { return axis < 0 ? axis + rank : axis; }

int64_t rank_of(const ir::Value* v) { return v && v->shape ? static_cast<int64_t>(v->shape->size()) : -1; }

// The dim of v at `axis` when known, else -1.
int64_t dim_at(const ir::Value* v, int64_t axis) {
  if (!v || !v->shape || axis < 0 || axis >= rank_of(v)) return -1;
  const Dim& d = (*v->shape)[static_cast<size_t>(axis)];
  return d.known() ? d.value : -1;
}

int64_t prod(const std::vector<int64_t>& d, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= d[i];
  return p;
}

const std::set<std::string>& elementwise_ops() {
  static const std::set<std::string> ops = {"Add",
                                            "Sub",
                                            "Mul",
                                            "Div",
                                            "Pow",
                                            "Max",
                                            "Min",
                                            "Sum",
                                            "Mean",
                                            "Where",
                                            "Equal",
                                            "Less",
                                            "LessOrEqual",
                                            "Greater",
                                            "GreaterOrEqual",
                                            "And",
                                            "Or",
                                            "Xor",
                                            "Mod",
                                            "PRelu",
                                            "Relu",
                                            "LeakyRelu",
                                            "Sigmoid",
                                            "Tanh",
                                            "Erf",
                                            "Exp",
                                            "Log",
                                            "Sqrt",
                                            "Reciprocal",
                                            "Neg",
                                            "Abs",
                                            "Cast",
                                            "Identity",
                                            "Gelu",
                                            "Elu",
                                            "Selu",
                                            "Celu",
                                            "Softplus",
                                            "Softsign",
                                            "HardSigmoid",
                                            "HardSwish",
                                            "Mish",
                                            "Sin",
                                            "Cos",
                                            "Floor",
                                            "Ceil",
                                            "Round",
                                            "Sign",
                                            "Not",
                                            "IsNaN",
                                            "IsInf",
                                            "Clip",
                                            "ThresholdedRelu",
                                            "BitShift"};
  return ops;
}

// Axes listed by an attribute (opset < 13) or a constant input (opset >= 13); false when
// neither gives them. `present` is false when the node has none (every size-1 dim for Squeeze).
bool axes_of(const ir::Node& n, size_t input, std::vector<int64_t>& axes, bool& present) {
  present = true;
  if (const ir::Attribute* a = n.attrs.find("axes")) {
    axes = a->ints;
    return true;
  }
  if (n.inputs.size() > input && n.inputs[input]) return constant_ints(n.inputs[input], axes);
  present = false;
  axes.clear();
  return true;
}

// What a row-wise node `n` needs of each input when only `out` (kPart) of its output is read.
// False when n is not row-wise along out.axis (then its inputs are needed whole). For a
// Reshape, `shape` gets the narrowed target.
bool input_rows(const ir::Node& n, const Rows& out, std::vector<Rows>& in, std::vector<int64_t>& shape) {
  if (!onnx_domain(n) || n.outputs.empty() || !n.outputs[0]) return false;
  for (size_t i = 1; i < n.outputs.size(); ++i)
    if (n.outputs[i]) return false;  // (extra outputs are dropped at import when unread)
  const ir::Value* y = n.outputs[0];
  const int64_t R = rank_of(y), a = out.axis;
  if (R < 0 || dim_at(y, a) < 0) return false;
  in.assign(n.inputs.size(), Rows::full());
  const std::string& op = n.op_type;

  if (elementwise_ops().count(op)) {
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const ir::Value* v = n.inputs[i];
      if (!v) continue;
      const int64_t r = rank_of(v);
      if (r < 0) return false;
      const int64_t ia = a - (R - r);
      if (ia < 0) continue;  // broadcast from a lower rank: whole
      const int64_t d = dim_at(v, ia);
      if (d == 1) continue;  // broadcast along the axis: whole
      if (d != dim_at(y, a)) return false;
      in[i] = Rows::part(ia, out.begin, out.end);
    }
    return true;
  }
  if (op == "LayerNormalization") {
    if (a >= norm(n.attrs.get_int("axis", -1), R)) return false;
    in[0] = Rows::part(a, out.begin, out.end);
    return true;
  }
  if (op == "Softmax" || op == "LogSoftmax") {
    const int64_t k = norm(n.attrs.get_int("axis", n.opset >= 13 ? -1 : 1), R);
    if (n.opset >= 13 ? a == k : a >= k) return false;
    in[0] = Rows::part(a, out.begin, out.end);
    return true;
  }
  if (op == "MatMul") {
    const int64_t ra = rank_of(n.input(0)), rb = rank_of(n.input(1));
    if (ra < 2 || rb < 2 || a >= R - 1) return false;
    if (a == R - 2) {
      in[0] = Rows::part(ra - 2, out.begin, out.end);
      return true;
    }
    for (size_t i = 0; i < 2; ++i) {  // a batch axis: broadcast like an elementwise op
      const int64_t r = i == 0 ? ra : rb, ia = a - (R - r);
      if (ia < 0 || ia >= r - 2) continue;
      const int64_t d = dim_at(n.inputs[i], ia);
      if (d == 1) continue;
      if (d != dim_at(y, a)) return false;
      in[i] = Rows::part(ia, out.begin, out.end);
    }
    return true;
  }
  if (op == "Gemm") {
    if (a != 0 || R != 2) return false;
    in[0] = Rows::part(n.attrs.get_int("transA", 0) ? 1 : 0, out.begin, out.end);
    if (n.inputs.size() > 2 && n.inputs[2] && rank_of(n.inputs[2]) == 2) {
      const int64_t d = dim_at(n.inputs[2], 0);
      if (d != 1) {
        if (d != dim_at(y, 0)) return false;
        in[2] = Rows::part(0, out.begin, out.end);
      }
    }
    return true;
  }
  if (op.rfind("Reduce", 0) == 0 && n.attrs.get_int("keepdims", 1) == 1) {  // over other axes, dims kept
    std::vector<int64_t> axes;
    bool present = false;
    if (!axes_of(n, 1, axes, present) || !present) return false;
    for (int64_t x : axes)
      if (norm(x, R) == a) return false;
    in[0] = Rows::part(a, out.begin, out.end);
    return true;
  }
  if (op == "Transpose") {
    std::vector<int64_t> perm = n.attrs.get_ints("perm");
    if (perm.empty())
      for (int64_t i = R - 1; i >= 0; --i) perm.push_back(i);
    if (static_cast<int64_t>(perm.size()) != R) return false;
    in[0] = Rows::part(norm(perm[static_cast<size_t>(a)], R), out.begin, out.end);
    return true;
  }
  if (op == "Unsqueeze" || op == "Squeeze") {
    std::vector<int64_t> axes;
    bool present = false;
    if (!axes_of(n, 1, axes, present)) return false;
    const int64_t rin = rank_of(n.input(0));
    if (rin < 0) return false;
    if (op == "Unsqueeze") {
      int64_t below = 0;
      for (int64_t u : axes) {
        if (norm(u, R) == a) return false;
        below += norm(u, R) < a;
      }
      in[0] = Rows::part(a - below, out.begin, out.end);
      return true;
    }
    std::set<int64_t> gone;
    if (present) {
      for (int64_t s : axes) gone.insert(norm(s, rin));
    } else {
      for (int64_t i = 0; i < rin; ++i)
        if (dim_at(n.input(0), i) == 1) gone.insert(i);
    }
    int64_t kept = -1;
    for (int64_t i = 0; i < rin; ++i)
      if (!gone.count(i) && ++kept == a) {
        in[0] = Rows::part(i, out.begin, out.end);
        return true;
      }
    return false;
  }
  if (op == "Gather") {  // along another axis than its own (its indices stay whole)
    const int64_t rin = rank_of(n.input(0)), q = rank_of(n.input(1));
    if (rin < 0 || q < 0) return false;
    const int64_t g = norm(n.attrs.get_int("axis", 0), rin);
    if (a < g) {
      in[0] = Rows::part(a, out.begin, out.end);
    } else if (a >= g + q) {
      in[0] = Rows::part(a - q + 1, out.begin, out.end);
    } else {
      return false;
    }
    return true;
  }
  if (op == "Slice") {  // along an axis it does not slice
    if (n.opset < 10 || n.inputs.size() < 3) return false;
    std::vector<int64_t> starts, axes;
    if (!constant_ints(n.input(1), starts)) return false;
    if (n.inputs.size() > 3 && n.inputs[3]) {
      if (!constant_ints(n.inputs[3], axes)) return false;
    } else {
      for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    }
    for (int64_t x : axes)
      if (norm(x, R) == a) return false;
    in[0] = Rows::part(a, out.begin, out.end);
    return true;
  }
  if (op == "Concat") {
    if (norm(n.attrs.get_int("axis", 0), R) == a) return false;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      if (!n.inputs[i] || dim_at(n.inputs[i], a) != dim_at(y, a)) return false;
      in[i] = Rows::part(a, out.begin, out.end);
    }
    return true;
  }
  if (op == "Reshape") {
    std::vector<int64_t> I, O;
    if (!known_dims(n.input(0), I) || !known_dims(y, O)) return false;
    if (std::count(O.begin(), O.end(), 0)) return false;  // (a 0 in the new target would copy a dim)
    // Rows [b, e) of axis a are, in each block of the outer axes, the flat run
    // [b * inner, e * inner): a run of whole indices [b', e') of the input axis j
    // whose outer axes make the same blocks.
    const int64_t outer = prod(O, 0, static_cast<size_t>(a)), inner = prod(O, static_cast<size_t>(a) + 1, O.size());
    for (size_t j = 0; j < I.size(); ++j) {
      if (prod(I, 0, j) != outer) continue;
      const int64_t in_inner = prod(I, j + 1, I.size());
      const int64_t fb = out.begin * inner, fe = out.end * inner;
      if (in_inner <= 0 || fb % in_inner || fe % in_inner || fe / in_inner > I[j]) continue;
      in[0] = Rows::part(static_cast<int64_t>(j), fb / in_inner, fe / in_inner);
      shape = O;
      shape[static_cast<size_t>(a)] = out.end - out.begin;
      return true;
    }
    return false;
  }
  return false;
}

// A Gather with constant indices or a one-axis, step-1 Slice with constant bounds: the rows
// of input 0 it reads (its origin demand), in `r`.
bool origin_rows(const ir::Node& n, Rows& r) {
  if (!onnx_domain(n) || n.inputs.empty() || !n.inputs[0]) return false;
  const ir::Value* x = n.inputs[0];
  const int64_t rin = rank_of(x);
  if (rin < 0) return false;
  if (n.op_type == "Gather") {
    std::vector<int64_t> idx;
    if (!constant_ints(n.input(1), idx) || idx.empty() || rank_of(n.input(1)) > 1) return false;
    const int64_t g = norm(n.attrs.get_int("axis", 0), rin), d = dim_at(x, g);
    if (d < 0) return false;
    int64_t lo = d, hi = -1;
    for (int64_t i : idx) {
      i = i < 0 ? i + d : i;
      if (i < 0 || i >= d) return false;  // out of range: the op's own error stays
      lo = std::min(lo, i);
      hi = std::max(hi, i);
    }
    r = Rows::part(g, lo, hi + 1);
    return true;
  }
  if (n.op_type == "Slice") {
    int64_t a = 0, b = 0, e = 0;
    if (!one_axis_slice(&n, a, b, e)) return false;
    r = Rows::part(a, b, e);
    return true;
  }
  return false;
}

// A 1-D integer constant (int64, or `dt` where the node's other index inputs are int32).
ir::Value* ints_constant(ir::Graph& g, const std::string& hint, const std::vector<int64_t>& v,
                         DataType dt = DataType::kInt64) {
  Tensor t = Tensor::empty(dt, {static_cast<int64_t>(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.set_from_double(static_cast<int64_t>(i), static_cast<double>(v[i]));
  return g.add_constant(hint, std::move(t));
}

}  // namespace

Status narrow_rows(ir::Graph& g, PassContext& ctx) {
  KILN_RETURN_IF_ERROR(g.topo_sort());
  const std::set<std::string> captures = captured_names(g);

  // Backwards: each value's demand; the row-wise nodes' input demands.
  std::map<const ir::Value*, Rows> demand;
  struct Plan {
    std::vector<Rows> in;
    std::vector<int64_t> shape;  // Reshape's narrowed target
  };
  std::map<const ir::Node*, Plan> plans;
  for (ir::Value* o : g.outputs) demand[o] = Rows::full();
  const auto& nodes = g.nodes();
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    const ir::Node& n = **it;
    // A value no node reads (dead, or a graph output) counts as needed whole.
    Rows out = Rows::full();
    if (!n.outputs.empty() && n.outputs[0]) {
      const ir::Value* y = n.outputs[0];
      Rows& d = demand[y];
      if (d.kind == Rows::kUnset || captures.count(y->name)) d = Rows::full();
      if (d.kind == Rows::kPart && d.begin == 0 && d.end == dim_at(y, d.axis)) d = Rows::full();
      out = d;
    }
    Plan plan;
    const bool narrowed = out.kind == Rows::kPart && input_rows(n, out, plan.in, plan.shape);
    Rows origin;
    const bool is_origin = !narrowed && origin_rows(n, origin);
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      if (!n.inputs[i]) continue;
      Rows need = Rows::full();
      if (narrowed) need = plan.in[i];
      if (is_origin && i == 0) need = origin;
      merge(demand[n.inputs[i]], need);
    }
    if (narrowed) plans[&n] = std::move(plan);
  }

  // Forwards: narrow the planned nodes whose output is still narrowed (its demand settled).
  std::map<const ir::Value*, Rows> kept;  // narrowed values: the rows they now hold
  for (auto& [n, p] : plans) {
    const Rows& d = demand[n->outputs[0]];
    if (d.kind == Rows::kPart) kept[n->outputs[0]] = d;
  }
  if (kept.empty()) return Status();
  std::map<std::tuple<const ir::Value*, int64_t, int64_t, int64_t>, ir::Value*> slices;
  // v's rows `need` (v holds `have` of them, or all when not narrowed): v itself or a Slice.
  auto provide = [&](ir::Value* v, const Rows& need) -> ir::Value* {
    int64_t base = 0;
    auto k = kept.find(v);
    if (k != kept.end()) {
      if (k->second.same_range(need)) return v;
      base = k->second.begin;
    }
    auto key = std::make_tuple(static_cast<const ir::Value*>(v), need.axis, need.begin - base, need.end - base);
    auto s = slices.find(key);
    if (s != slices.end()) return s->second;
    ir::Value* y = g.add_unique_value(v->name + "_rows", v->dtype);
    ir::Node* sl = g.add_node(
        "Slice",
        {v, ints_constant(g, v->name + "_rows_start", {need.begin - base}),
         ints_constant(g, v->name + "_rows_end", {need.end - base}),
         ints_constant(g, v->name + "_rows_axis", {need.axis}), ints_constant(g, v->name + "_rows_step", {1})},
        {y}, g.unique_name(v->name + "/rows"));
    sl->opset = 13;
    slices[key] = y;
    return y;
  };
  std::vector<ir::Node*> order;
  for (auto& n : nodes) order.push_back(n.get());
  int narrowed = 0;
  for (ir::Node* n : order) {
    auto p = plans.find(n);
    if (p != plans.end() && kept.count(n->outputs[0])) {
      for (size_t i = 0; i < n->inputs.size(); ++i)
        if (n->inputs[i] && p->second.in[i].kind == Rows::kPart) n->inputs[i] = provide(n->inputs[i], p->second.in[i]);
      if (n->op_type == "Reshape") {
        n->inputs[1] = ints_constant(g, n->name + "_rows_shape", p->second.shape);
        n->attrs.erase("allowzero");
      }
      ++narrowed;
      continue;
    }
    // An origin reading a narrowed value: its indices move down by the rows dropped before.
    ir::Value* x = n->inputs.empty() ? nullptr : n->inputs[0];
    auto k = x ? kept.find(x) : kept.end();
    if (k == kept.end()) continue;
    const Rows& have = k->second;
    if (have.begin == 0) continue;
    if (n->op_type == "Gather") {
      std::vector<int64_t> v;
      constant_ints(n->input(1), v);
      const int64_t extent = dim_at(x, have.axis);  // (the shape before the rewrite)
      for (int64_t& i : v) i = (i < 0 ? i + extent : i) - have.begin;
      const Dims dims = rank_of(n->input(1)) == 0 ? Dims{} : Dims{static_cast<int64_t>(v.size())};
      n->inputs[1] = g.add_constant(n->name + "_rows_indices", Tensor::from_vector<int64_t>(DataType::kInt64, dims, v));
    } else {  // a Slice (origin_rows: one axis, step 1)
      Rows r;
      origin_rows(*n, r);
      const DataType dt = n->input(1)->initializer->dtype();  // (Slice's index inputs share one type)
      n->inputs[1] = ints_constant(g, n->name + "_rows_start", {r.begin - have.begin}, dt);
      n->inputs[2] = ints_constant(g, n->name + "_rows_end", {r.end - have.begin}, dt);
    }
  }
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  ctx.stats["narrowed_rows"] += narrowed;
  return infer_shapes(g, ctx);
}

}  // namespace kiln::passes

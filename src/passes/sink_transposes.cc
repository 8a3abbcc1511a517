// Transpose sinking: a Transpose that keeps the last axis commutes with ops acting row-wise on
// that axis, so it moves through them to where it is free or cancels.
//   FusedAttention(MatMulBias(Transpose(x, p), W, b))   becomes   FusedAttention(MatMulBias(x, W, b)), views start with
//   p Transpose(Reshape(Gemm(Reshape(o, [-1, K]), W, b), [d0, d1, N]), p)   becomes   MatMulBias(Reshape(o', [0, 0,
//   K]), W^T, b)
//     with o' = o permuted by p: a Transpose or a FusedAttention output, whose view takes the permutation.
// Row-wise: MatMul / MatMulBias with a rank-2 B, elementwise unary ops and Cast, binary ops whose other
// operand broadcasts only along the last axis, last-axis Softmax / LayerNormalization, and a 2-D
// MatMul/Gemm between Reshapes that only merge and split the leading dims. A Transpose moves (down
// through its readers, or up through its producers) only when the move ends at another Transpose
// (the pipeline's next cancel_transposes composes the pair) or at a FusedAttention operand or output.
// Readers that need only the shape (Shape, shape-only nodes) keep the old layout through a Transpose
// that never runs (ir::shape_only_nodes). Runs after fuse_attention, so a move toward attention
// happens only where attention was fused: unfused, it would make the copy wider (QKV: 3x).
#include <algorithm>
#include <cstring>
#include <optional>
#include <set>
#include <unordered_set>

#include "ir/shape_only.h"
#include "ops/attention/attn_view.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"
#include "runtime/shape_eval.h"

namespace kiln::passes {

namespace {

using Perm = std::vector<int64_t>;
namespace attn = ops::attn;

bool onnx(const ir::Node* n, const char* op) { return n && n->domain.empty() && n->op_type == op; }
bool kiln_op(const ir::Node* n, const char* op) { return n && n->domain == "kiln" && n->op_type == op; }

// The permutation of a Transpose (default: reversed dims), or empty when unknown or invalid.
Perm perm_of(const ir::Node& n) {
  Perm p = n.attrs.get_ints("perm");
  if (!n.attrs.has("perm")) {
    const ir::Value* x = n.input(0);
    if (!x || !x->shape) return {};
    for (size_t i = x->shape->size(); i-- > 0;) p.push_back(static_cast<int64_t>(i));
  }
  std::vector<bool> seen(p.size(), false);
  for (int64_t v : p) {
    if (v < 0 || v >= static_cast<int64_t>(p.size()) || seen[v]) return {};
    seen[v] = true;
  }
  return p;
}

bool is_identity(const Perm& p) {
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] != static_cast<int64_t>(i)) return false;
  return true;
}

// Moves something: rank >= 3 and the last axis stays last.
bool keeps_last(const Perm& p) {
  return p.size() >= 3 && p.back() == static_cast<int64_t>(p.size()) - 1 && !is_identity(p);
}

Perm inverse(const Perm& p) {
  Perm q(p.size());
  for (size_t i = 0; i < p.size(); ++i) q[static_cast<size_t>(p[i])] = static_cast<int64_t>(i);
  return q;
}

// Transpose(Transpose(x, a), b) == Transpose(x, compose(a, b)).
Perm compose(const Perm& a, const Perm& b) {
  Perm q(b.size());
  for (size_t i = 0; i < b.size(); ++i) q[i] = a[static_cast<size_t>(b[i])];
  return q;
}

std::optional<Shape> permuted(const std::optional<Shape>& s, const Perm& p) {
  if (!s || s->size() != p.size()) return std::nullopt;
  Shape r;
  for (int64_t i : p) r.push_back((*s)[static_cast<size_t>(i)]);
  return r;
}

ir::Attributes perm_attr(const Perm& p) {
  ir::Attributes a;
  a.set("perm", ir::Attribute::from_ints(p));
  return a;
}

const std::set<std::string> kUnary = {"Relu",  "Gelu",      "Erf",         "Tanh",      "Sigmoid", "Exp",
                                      "Log",   "Neg",       "Abs",         "Sqrt",      "Cast",    "Reciprocal",
                                      "Swish", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu",     "Selu",
                                      "Celu",  "Mish",      "Softplus",    "Softsign",  "Sin",     "Cos",
                                      "Floor", "Ceil",      "Round",       "Sign",      "Clip",    "ThresholdedRelu",
                                      "Not",   "IsNaN",     "IsInf"};
const std::set<std::string> kBinary = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"};

// v broadcasts only along the last axis of a rank-`rank` tensor: rank <= `rank`, other dims known 1s.
bool last_axis_only(const ir::Value* v, size_t rank) {
  if (!v || !v->shape || v->shape->size() > rank) return false;
  for (size_t i = 0; i + 1 < v->shape->size(); ++i)
    if (!((*v->shape)[i].known() && (*v->shape)[i].value == 1)) return false;
  return true;
}

bool rank2(const ir::Value* v) { return v && v->shape && v->shape->size() == 2; }

bool last_axis(int64_t axis, size_t rank) { return axis == -1 || axis == static_cast<int64_t>(rank) - 1; }

// True when n acts row-wise on the last axis of its input i (rank `rank`), with one output of that rank.
bool row_wise(const ir::Node* n, size_t i, size_t rank) {
  if (n->outputs.empty() || !n->outputs[0] || i >= n->inputs.size() || !n->inputs[i]) return false;
  for (size_t k = 1; k < n->outputs.size(); ++k)
    if (n->outputs[k]) return false;  // LayerNormalization's mean / inv-std-dev outputs
  if (std::count(n->inputs.begin(), n->inputs.end(), n->inputs[i]) != 1) return false;
  if (n->domain == "kiln")
    return n->op_type == "MatMulBias" && i == 0 && n->inputs.size() == 3 && rank2(n->input(1)) &&
           last_axis_only(n->input(2), 1);
  if (!n->domain.empty()) return false;
  const std::string& op = n->op_type;
  if (kUnary.count(op)) {
    if (i != 0) return false;
    for (size_t k = 1; k < n->inputs.size(); ++k)  // Clip's min / max
      if (n->inputs[k] && !(n->inputs[k]->shape && n->inputs[k]->shape->empty())) return false;
    return true;
  }
  if (kBinary.count(op)) return n->inputs.size() == 2 && last_axis_only(n->inputs[1 - i], rank);
  if (op == "MatMul") return i == 0 && n->inputs.size() == 2 && rank2(n->input(1));
  if (op == "Softmax" || op == "LogSoftmax")
    return i == 0 && last_axis(n->attrs.get_int("axis", n->opset >= 13 ? -1 : 1), rank);
  if (op == "LayerNormalization") {
    for (size_t k = 1; k < n->inputs.size(); ++k)
      if (n->inputs[k] && !last_axis_only(n->inputs[k], 1)) return false;
    return i == 0 && last_axis(n->attrs.get_int("axis", -1), rank);
  }
  return false;
}

size_t index_of(const ir::Node* n, const ir::Value* v) {
  return static_cast<size_t>(std::find(n->inputs.begin(), n->inputs.end(), v) - n->inputs.begin());
}

const char* kViews[3] = {"q_view", "k_view", "v_view"};

// Prepends (front) or appends a transpose step to a FusedAttention view program, merging it with
// an adjacent transpose step of the same rank.
void add_view_transpose(ir::Node* f, const char* attr, const Perm& p, bool front) {
  std::vector<int64_t> code = f->attrs.get_ints(attr);
  auto steps = attn::decode_view(code);
  std::vector<int64_t> out;
  if (steps && !steps->empty()) {
    attn::ViewStep& edge = front ? steps->front() : steps->back();
    if (edge.op == attn::kTranspose && edge.args.size() == p.size()) {
      edge.args = front ? compose(p, edge.args) : compose(edge.args, p);
      for (const auto& s : *steps) attn::encode_step(out, s.op, s.args);
      f->attrs.set(attr, ir::Attribute::from_ints(out));
      return;
    }
  }
  if (front) attn::encode_step(out, attn::kTranspose, p);
  out.insert(out.end(), code.begin(), code.end());
  if (!front) attn::encode_step(out, attn::kTranspose, p);
  f->attrs.set(attr, ir::Attribute::from_ints(out));
}

// Row-major transpose of a 2-D constant.
std::optional<Tensor> transpose_2d(const Tensor& w) {
  if (w.rank() != 2 || dtype_is_narrow(w.dtype())) return std::nullopt;
  const int64_t r = w.dim(0), c = w.dim(1);
  const size_t es = dtype_size(w.dtype());
  Tensor t = Tensor::empty(w.dtype(), {c, r});
  const auto* src = static_cast<const char*>(w.data());
  auto* dst = static_cast<char*>(t.data());
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j) std::memcpy(dst + (j * r + i) * es, src + (i * c + j) * es, es);
  return t;
}

// One step of a walk: a row-wise node (its data input i), or a 2-D matmul between Reshapes
// (r9 -> mm -> n), which the permutation crosses as `above` (rank of r9's input).
struct Hop {
  ir::Node* n = nullptr;
  size_t i = 0;
  Perm p;  // the permutation at n's output
  ir::Node* r9 = nullptr;
  ir::Node* mm = nullptr;
  Perm above;
  int64_t k = 0;
};

struct Sinker {
  ir::Graph& g;
  PassContext& ctx;
  std::unordered_set<const ir::Node*> side;  // shape-only nodes and the layout keepers added for them
  std::set<const ir::Node*> removed;
  std::vector<Propagation> props;  // concrete types at two assignments of the symbolic dims
  std::set<std::string> captured;  // values subgraphs read by name: never moved

  // A value whose layout or producer may change: not a graph output, not read by a subgraph.
  bool movable(const ir::Value* v) const { return !g.is_output(v) && !captured.count(v->name); }

  std::vector<ir::Node*> data_readers(const ir::Value* v) {
    std::vector<ir::Node*> r;
    for (ir::Node* c : g.consumers(v))
      if (!ir::reads_type_only(c) && !side.count(c)) r.push_back(c);
    return r;
  }

  void remove(ir::Node* n) {
    n->inputs.clear();
    for (ir::Value*& o : n->outputs) {
      if (o && o->producer == n) o->producer = nullptr;
      o = nullptr;
    }
    removed.insert(n);
  }

  ir::Value* new_value(const ir::Value* like, const Perm& p) {
    ir::Value* v = g.add_unique_value(like->name + "_t", like->dtype);
    v->shape = permuted(like->shape, p);
    return v;
  }

  ir::Node* add_transpose(ir::Value* x, ir::Value* y, const Perm& p, const std::string& hint) {
    ir::Node* t = g.add_node("Transpose", {x}, {y}, g.unique_name(hint));
    t->attrs = perm_attr(p);
    t->opset = 13;
    y->producer = t;
    return t;
  }

  // `old` lost its producer's data; readers left (shape readers) get it from `now` through a
  // Transpose that never runs.
  void keep(ir::Value* old, ir::Value* now, const Perm& p) {
    if (g.consumers(old).empty() && !g.is_output(old)) return;
    side.insert(add_transpose(now, old, p, old->name + "/layout"));
  }

  // The FusedAttention readers of v when every data reader is one, reading v as Q, K or V.
  bool attention_readers(const std::vector<ir::Node*>& rd, const ir::Value* v) {
    if (rd.empty()) return false;
    for (const ir::Node* f : rd) {
      if (!kiln_op(f, "FusedAttention")) return false;
      for (size_t s = 3; s < f->inputs.size(); ++s)
        if (f->inputs[s] == v) return false;
    }
    return true;
  }

  // Down from t through row-wise readers.
  bool sink(ir::Node* t) {
    const Perm p = perm_of(*t);
    if (!keeps_last(p)) return false;
    const size_t r = p.size();
    ir::Value* cur = t->outputs[0];
    std::vector<std::pair<ir::Node*, size_t>> hops;
    ir::Node* end_t = nullptr;
    std::vector<ir::Node*> end_fa;
    for (;;) {
      if (!movable(cur)) return false;
      auto rd = data_readers(cur);
      if (rd.size() == 1) {
        ir::Node* n = rd[0];
        size_t i = index_of(n, cur);
        if (row_wise(n, i, r)) {
          hops.push_back({n, i});
          cur = n->outputs[0];
          continue;
        }
        if (onnx(n, "Transpose") && n->inputs.size() == 1 && perm_of(*n).size() == r) {
          end_t = n;
          break;
        }
      }
      if (attention_readers(rd, cur)) {
        end_fa = rd;
        break;
      }
      return false;
    }
    ir::Value* src = t->inputs[0];
    std::vector<std::pair<ir::Value*, ir::Value*>> kept;  // (old transposed value, new value)
    for (auto [n, i] : hops) {
      n->inputs[i] = src;
      ir::Value* old = n->outputs[0];
      ir::Value* now = new_value(old, inverse(p));
      n->outputs[0] = now;
      now->producer = n;
      kept.push_back({old, now});
      src = now;
    }
    if (end_t) {
      record_fusion(*end_t, {t, end_t});
      end_t->attrs.set("perm", ir::Attribute::from_ints(compose(p, perm_of(*end_t))));
      end_t->inputs[0] = src;
    } else {
      for (ir::Node* f : end_fa)
        for (size_t s = 0; s < 3; ++s)
          if (f->inputs[s] == cur) {
            f->inputs[s] = src;
            add_view_transpose(f, kViews[s], p, /*front=*/true);
          }
    }
    for (auto [old, now] : kept) keep(old, now, p);
    if (g.consumers(t->outputs[0]).empty()) remove(t);
    ++ctx.stats["sunk_transposes"];
    return true;
  }

  // Reshape(mm(Reshape(a, [R, K])), [d0, .., N]) with mm a 2-D row-wise matmul, where the result's
  // leading dims are a's and a's trailing dims hold K (checked at two assignments of the symbolic
  // dims): the permutation p of its output crosses it as p on a's leading dims.
  std::optional<Hop> sandwich(ir::Node* r10, const Perm& p) {
    if (!onnx(r10, "Reshape") || r10->inputs.size() != 2 || props.empty()) return std::nullopt;
    auto sole = [&](ir::Value* v, ir::Node* reader) {
      return v && movable(v) && g.consumers(v).size() == 1 && g.consumers(v)[0] == reader;
    };
    ir::Value* y2 = r10->inputs[0];
    ir::Node* mm = y2 ? y2->producer : nullptr;
    if (!mm || !sole(y2, r10) || mm->outputs.size() != 1 || mm->inputs.size() < 2) return std::nullopt;
    ir::Value* w = mm->inputs[1];
    if (!rank2(w) || !rank2(mm->inputs[0])) return std::nullopt;
    bool trans_b = false;
    if (onnx(mm, "Gemm")) {
      if (mm->attrs.get_int("transA", 0) != 0 || mm->attrs.get_float("alpha", 1.f) != 1.f) return std::nullopt;
      trans_b = mm->attrs.get_int("transB", 0) != 0;
      if (trans_b && !w->initializer) return std::nullopt;
      ir::Value* c = mm->input(2);
      if (c && (mm->attrs.get_float("beta", 1.f) != 1.f || !c->initializer || !last_axis_only(c, 2) ||
                c->initializer->dtype() != y2->dtype))
        return std::nullopt;
    } else if (!(onnx(mm, "MatMul") && mm->inputs.size() == 2) &&
               !(kiln_op(mm, "MatMulBias") && mm->inputs.size() == 3 && last_axis_only(mm->input(2), 1))) {
      return std::nullopt;
    }
    ir::Value* x2 = mm->inputs[0];
    ir::Node* r9 = x2->producer;
    if (!onnx(r9, "Reshape") || !sole(x2, mm) || !r9->inputs[0]) return std::nullopt;
    ir::Value* a = r9->inputs[0];
    const size_t m = p.size();
    int64_t k = -1, rank_a = -1;
    for (const Propagation& pr : props) {
      auto ta = pr.types.find(a), ty = pr.types.find(r10->outputs[0]), tw = pr.types.find(w);
      if (ta == pr.types.end() || ty == pr.types.end() || tw == pr.types.end() || !ta->second.shape ||
          !ty->second.shape || !tw->second.shape)
        return std::nullopt;
      const Dims ad = shape_to_dims(*ta->second.shape), yd = shape_to_dims(*ty->second.shape),
                 wd = shape_to_dims(*tw->second.shape);
      if (dims_volume(ad) < 0 || dims_volume(yd) < 0 || dims_volume(wd) < 0 || wd.size() != 2) return std::nullopt;
      const int64_t kk = trans_b ? wd[1] : wd[0], n = trans_b ? wd[0] : wd[1];
      if (yd.size() != m || ad.size() < m || yd.back() != n) return std::nullopt;
      if (onnx(mm, "Gemm") && mm->input(2) && mm->input(2)->initializer->numel() != n) return std::nullopt;
      if (!std::equal(yd.begin(), yd.end() - 1, ad.begin())) return std::nullopt;
      int64_t tail = 1;
      for (size_t i = m - 1; i < ad.size(); ++i) tail *= ad[i];
      if (tail != kk || (k >= 0 && (kk != k || static_cast<int64_t>(ad.size()) != rank_a))) return std::nullopt;
      k = kk;
      rank_a = static_cast<int64_t>(ad.size());
    }
    Hop h;
    h.n = r10;
    h.p = p;
    h.r9 = r9;
    h.mm = mm;
    h.k = k;
    h.above.assign(p.begin(), p.end() - 1);
    for (int64_t i = static_cast<int64_t>(m) - 1; i < rank_a; ++i) h.above.push_back(i);
    return h;
  }

  // Up from t through row-wise producers.
  bool hoist(ir::Node* t) {
    Perm p = perm_of(*t);
    if (!keeps_last(p)) return false;
    ir::Value* cur = t->inputs[0];
    ir::Node* below = t;
    std::vector<Hop> hops;
    ir::Node* top = nullptr;
    for (;;) {
      auto rd = data_readers(cur);
      ir::Node* n = cur->producer;
      if (!movable(cur) || rd.size() != 1 || rd[0] != below || !n || n->outputs.empty() || n->outputs[0] != cur)
        return false;
      bool moved = false;
      for (size_t i = 0; i < n->inputs.size() && !moved; ++i) {
        ir::Value* in = n->inputs[i];
        if (!in || in->initializer || !in->shape || in->shape->size() != p.size() || !row_wise(n, i, p.size()))
          continue;
        Hop h;
        h.n = n, h.i = i, h.p = p;
        hops.push_back(h);
        below = n;
        cur = in;
        moved = true;
      }
      if (moved) continue;
      if (auto h = sandwich(n, p)) {
        hops.push_back(*h);
        below = h->r9;
        cur = h->r9->inputs[0];
        p = h->above;
        continue;
      }
      if ((onnx(n, "Transpose") && n->inputs.size() == 1 && perm_of(*n).size() == p.size()) ||
          (kiln_op(n, "FusedAttention") && n->outputs.size() == 1 && cur->shape && cur->shape->size() == p.size())) {
        top = n;
        break;
      }
      return false;
    }
    // Rebuild top down: `src` is the permuted tensor feeding the next hop.
    ir::Value* src = new_value(cur, p);
    if (onnx(top, "Transpose")) {
      ir::Node* merged = add_transpose(top->inputs[0], src, compose(perm_of(*top), p), top->name + "/sunk");
      record_fusion(*merged, {top, t});
    } else {
      top->outputs[0] = src;
      src->producer = top;
      add_view_transpose(top, "o_view", p, /*front=*/false);
    }
    ir::Value* z = t->outputs[0];
    remove(t);
    for (size_t j = hops.size(); j-- > 0;) {
      Hop& h = hops[j];
      ir::Value* old = h.n->outputs[0];
      ir::Value* out = j == 0 ? z : new_value(old, h.p);
      if (!h.r9) {
        h.n->inputs[h.i] = src;
        h.n->outputs[0] = out;
        out->producer = h.n;
      } else {
        if (!rebuild_sandwich(h, src, out)) return false;  // cannot happen: checked while walking
      }
      keep(old, out, inverse(h.p));
      src = out;
    }
    if (onnx(top, "Transpose")) {
      if (g.consumers(top->outputs[0]).empty() && !g.is_output(top->outputs[0])) remove(top);
    } else {
      keep(cur, top->outputs[0], inverse(p));  // p: the permutation at the top
    }
    ++ctx.stats["hoisted_transposes"];
    return true;
  }

  // src (a permuted) -> [Reshape(src, [0, .., 0, K])] -> MatMul / MatMulBias writing `out`.
  bool rebuild_sandwich(const Hop& h, ir::Value* src, ir::Value* out) {
    ir::Node* mm = h.mm;
    const size_t m = h.p.size();
    ir::Value* x = src;
    if (h.above.size() != m) {
      std::vector<int64_t> target(m, 0);
      target.back() = h.k;
      ir::Value* shape = g.add_constant(
          h.r9->name + "_rows", Tensor::from_vector<int64_t>(DataType::kInt64, {static_cast<int64_t>(m)}, target));
      x = g.add_unique_value(h.r9->outputs[0]->name + "_rows", src->dtype);
      if (src->shape) {
        Shape s(src->shape->begin(), src->shape->begin() + static_cast<int64_t>(m) - 1);
        s.push_back(h.k);
        x->shape = s;
      }
      ir::Node* r = g.add_node("Reshape", {src, shape}, {x}, g.unique_name(h.r9->name + "/rows"));
      r->opset = 14;
      x->producer = r;
    }
    ir::Value* w = mm->inputs[1];
    ir::Value* bias = kiln_op(mm, "MatMulBias") ? mm->input(2) : nullptr;
    if (onnx(mm, "Gemm")) {
      if (mm->attrs.get_int("transB", 0) != 0) {
        auto wt = transpose_2d(*w->initializer);
        if (!wt) return false;
        w = g.add_constant(w->name + "_t", *wt);
      }
      if (ir::Value* c = mm->input(2)) {
        const int64_t n = c->initializer->numel();
        bias = c->initializer->rank() == 1 ? c : g.add_constant(c->name + "_vector", c->initializer->reshaped({n}));
      }
    }
    const std::vector<const ir::Node*> originals = {h.r9, mm, h.n};
    ir::Node* f = bias ? g.add_node("MatMulBias", {x, w, bias}, {out}, g.unique_name(mm->name + "/rows"))
                       : g.add_node("MatMul", {x, w}, {out}, g.unique_name(mm->name + "/rows"));
    if (bias) {
      f->domain = "kiln";
      f->opset = 1;
      g.opset_imports.emplace("kiln", 1);
    } else {
      f->opset = 13;
    }
    if (kiln_op(mm, "MatMulBias"))  // keep its epilogue (fuse_matmul_activation)
      if (const ir::Attribute* act = mm->attrs.find("activation")) f->attrs.set("activation", *act);
    record_fusion(*f, originals);
    out->producer = f;
    remove(h.r9);
    remove(mm);
    remove(h.n);
    return true;
  }
};

// Concrete types with every symbolic input dim set to a prime (two different sets), so a
// shape fact that holds in both is no accident of one size.
std::vector<Propagation> assignments(const ir::Graph& g, const PassContext& ctx) {
  static const int64_t kPrimes[2][8] = {{7, 11, 13, 17, 19, 23, 29, 31}, {37, 41, 43, 47, 53, 59, 61, 67}};
  std::vector<Propagation> out;
  for (const auto& primes : kPrimes) {
    std::map<std::string, int64_t> chosen;
    std::map<std::string, Shape> shapes;
    size_t next = 0;
    for (const ir::Value* in : g.inputs) {
      auto it = ctx.input_shapes.find(in->name);
      if (it == ctx.input_shapes.end() && !in->shape) return {};
      Shape s = it != ctx.input_shapes.end() ? it->second : *in->shape;
      for (size_t i = 0; i < s.size(); ++i) {
        if (s[i].known()) continue;
        std::string key = s[i].name.empty() ? in->name + "#" + std::to_string(i) : s[i].name;
        if (!chosen.count(key)) chosen[key] = primes[next++ % 8];
        s[i] = Dim(chosen[key]);
      }
      shapes[in->name] = s;
    }
    Propagation p;
    if (!propagate(g, shapes, p, /*strict=*/false).ok()) return {};
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace

Status sink_transposes(ir::Graph& g, PassContext& ctx) {
  std::vector<ir::Node*> transposes;
  bool sandwiches = false;
  for (auto& n : g.nodes()) {
    if (onnx(n.get(), "Transpose") && n->inputs.size() == 1 && n->outputs.size() == 1 && n->outputs[0] &&
        keeps_last(perm_of(*n)))
      transposes.push_back(n.get());
    if (onnx(n.get(), "Reshape") && n->inputs[0] && n->inputs[0]->producer &&
        (onnx(n->inputs[0]->producer, "Gemm") || onnx(n->inputs[0]->producer, "MatMul") ||
         kiln_op(n->inputs[0]->producer, "MatMulBias")))
      sandwiches = true;
  }
  if (transposes.empty()) return Status();
  auto only = ir::shape_only_nodes(g);
  Sinker s{g, ctx, {only.begin(), only.end()}, {}, {}, {}};
  for (auto& n : g.nodes())
    for (auto& [k, a] : n->attrs.all()) {
      if (a.g)
        for (auto& name : a.g->outer_references()) s.captured.insert(name);
      for (auto& sg : a.graphs)
        for (auto& name : sg->outer_references()) s.captured.insert(name);
    }
  if (sandwiches) s.props = assignments(g, ctx);
  bool changed = false;
  for (ir::Node* t : transposes) {
    if (s.removed.count(t) || s.side.count(t) || t->inputs.empty()) continue;
    changed = s.sink(t) || s.hoist(t) || changed;
  }
  if (!changed) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return s.removed.count(&n) != 0; });
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  return Status();
}

}  // namespace kiln::passes

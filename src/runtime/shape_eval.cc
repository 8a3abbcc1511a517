#include "runtime/shape_eval.h"

#include <algorithm>
#include <optional>
#include <set>
#include <utility>

#include "ops/control/outer_types.h"

namespace kiln {

namespace {

bool has_subgraph(const ir::Node& n) {
  for (auto& [k, a] : n.attrs.all())
    if (a.g || !a.graphs.empty()) return true;
  return false;
}

// Shape's dims [start, end) of a rank-`rank` input (its start / end attributes, clamped).
std::pair<int64_t, int64_t> shape_op_range(const ir::Node& n, int64_t rank) {
  int64_t start = n.attrs.get_int("start", 0), end = n.attrs.get_int("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, 0, rank);
  return {start, std::max(start, end)};
}

// Shape/Size of a tensor whose dims are known need no data.
bool eval_shape_op(const ir::Node& n, const ops::TensorType& in, Tensor& out) {
  if (!in.shape || !shape_is_concrete(*in.shape)) return false;
  Dims d = shape_to_dims(*in.shape);
  if (n.op_type == "Size") {
    out = Tensor::empty(DataType::kInt64, {});
    *out.data_as<int64_t>() = dims_volume(d);
    return true;
  }
  const auto [start, end] = shape_op_range(n, static_cast<int64_t>(d.size()));
  const int64_t len = end - start;
  out = Tensor::empty(DataType::kInt64, {len});
  for (int64_t i = 0; i < len; ++i) out.data_as<int64_t>()[i] = d[static_cast<size_t>(start + i)];
  return true;
}

// Symbolic shape values (shape_eval.h's SymVec) longer than this are not tracked.
constexpr size_t kSymMax = 16;

bool is_index_type(DataType t) { return t == DataType::kInt64 || t == DataType::kInt32; }

// A known small integer value as a SymVec.
bool literal_vec(const Tensor& t, SymVec& out) {
  if (!is_index_type(t.dtype()) || t.rank() > 1 || t.numel() > static_cast<int64_t>(kSymMax)) return false;
  out = SymVec();
  out.scalar = t.rank() == 0;
  for (int64_t v : t.to_int64_vector()) out.e.push_back(SymEntry{true, v, Dim()});
  return true;
}

// The ops eval_sym computes and the ones shape_from_sym reads a shape value for.
bool follows_shape_values(const std::string& op) {
  static const std::set<std::string> ops = {
      "Shape", "Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Gather", "Slice",          "Concat",
      "Mul",   "Div",  "Add",      "Sub",       "Equal",   "Where",   "Expand", "ConstantOfShape"};
  return ops.count(op) > 0;
}

// The sym values of the node's outputs that shape arithmetic computes from symbolic inputs;
// false when the node is not such arithmetic or an input is not known well enough.
bool eval_sym(const ir::Node& n, const std::vector<ops::TensorType>& types, const std::vector<const SymVec*>& in,
              const std::vector<const Tensor*>& values, SymVec& r) {
  const std::string& op = n.op_type;
  auto ints = [&](size_t i, std::vector<int64_t>& v) {
    if (i >= values.size() || !values[i]) return false;
    v = values[i]->to_int64_vector();
    return true;
  };
  r = SymVec();
  if (op == "Shape") {
    if (types.empty() || !types[0].shape) return false;
    const Shape& sh = *types[0].shape;
    const auto [b, e] = shape_op_range(n, static_cast<int64_t>(sh.size()));
    for (int64_t i = b; i < e; ++i) {
      const Dim& d = sh[static_cast<size_t>(i)];
      r.e.push_back(d.known() ? SymEntry{true, d.value, Dim()} : SymEntry{false, 0, d});
    }
    return r.e.size() <= kSymMax;
  }
  if (in.empty() || !in[0]) return false;
  const SymVec& a = *in[0];
  if (op == "Cast" || op == "Identity") {
    r = a;
    return true;
  }
  if (op == "Unsqueeze" || op == "Squeeze" || op == "Reshape") {
    // Only between a scalar and one element, or a 1-D reshape.
    r = a;
    if (op == "Unsqueeze") {
      r.scalar = false;
      return a.scalar;
    }
    if (op == "Squeeze") {
      r.scalar = true;
      return !a.scalar && a.e.size() == 1;
    }
    std::vector<int64_t> t;
    if (!ints(1, t) || t.size() > 1 || (t.empty() && a.e.size() != 1)) return false;
    r.scalar = t.empty();
    return true;
  }
  if (op == "Gather") {
    std::vector<int64_t> idx;
    if (a.scalar || n.attrs.get_int("axis", 0) != 0 || !ints(1, idx)) return false;
    r.scalar = values[1]->rank() == 0;
    for (int64_t i : idx) {
      if (i < 0) i += static_cast<int64_t>(a.e.size());
      if (i < 0 || i >= static_cast<int64_t>(a.e.size())) return false;
      r.e.push_back(a.e[static_cast<size_t>(i)]);
    }
    return true;
  }
  if (op == "Slice") {
    std::vector<int64_t> st, en, ax = {0}, sp = {1};
    if (a.scalar || !ints(1, st) || !ints(2, en) || st.size() != 1 || en.size() != 1) return false;
    if ((values.size() > 3 && values[3] && !ints(3, ax)) || (values.size() > 4 && values[4] && !ints(4, sp)))
      return false;
    if (ax.size() != 1 || (ax[0] != 0 && ax[0] != -1) || sp.size() != 1 || sp[0] != 1) return false;
    const int64_t len = static_cast<int64_t>(a.e.size());
    int64_t b = st[0] < 0 ? st[0] + len : st[0], e = en[0] < 0 ? en[0] + len : en[0];
    b = std::clamp<int64_t>(b, 0, len), e = std::clamp<int64_t>(e, 0, len);
    for (int64_t i = b; i < e; ++i) r.e.push_back(a.e[static_cast<size_t>(i)]);
    return true;
  }
  if (op == "Concat") {
    for (const SymVec* v : in) {
      if (!v || v->scalar) return false;
      r.e.insert(r.e.end(), v->e.begin(), v->e.end());
    }
    return r.e.size() <= kSymMax;
  }
  if (op == "Mul" || op == "Div" || op == "Equal" || op == "Add" || op == "Sub") {
    if (in.size() != 2 || !in[1]) return false;
    const SymVec& b = *in[1];
    const size_t len = std::max(a.e.size(), b.e.size());
    if ((a.e.size() != len && a.e.size() != 1) || (b.e.size() != len && b.e.size() != 1)) return false;
    r.scalar = a.scalar && b.scalar;
    for (size_t i = 0; i < len; ++i) {
      const SymEntry& x = a.e[a.e.size() == 1 ? 0 : i];
      const SymEntry& y = b.e[b.e.size() == 1 ? 0 : i];
      SymEntry z;
      if (x.literal && y.literal) {
        if (op == "Mul") z.value = x.value * y.value;
        if (op == "Add") z.value = x.value + y.value;
        if (op == "Sub") z.value = x.value - y.value;
        if (op == "Equal") z.value = x.value == y.value;
        if (op == "Div") {
          if (y.value == 0) return false;
          z.value = x.value / y.value;  // exact for dims; C++ truncation otherwise, as int Div
        }
      } else if (op == "Equal") {
        // A dim is never negative; a symbol equals itself.
        const SymEntry& lit = x.literal ? x : y;
        if (x.literal != y.literal && lit.value < 0)
          z.value = 0;
        else if (!x.literal && !y.literal && x.dim == y.dim)
          z.value = 1;
        else
          z = SymEntry{false, 0, Dim::unknown()};
      } else {
        const Dim dx = x.as_dim(), dy = y.as_dim();
        if ((x.literal && x.value < 0) || (y.literal && y.value < 0)) return false;
        const Dim d = op == "Mul" ? dim_mul(dx, dy) : op == "Div" ? dim_div(dx, dy) : Dim::unknown();
        z = d.known() ? SymEntry{true, d.value, Dim()} : SymEntry{false, 0, d};
      }
      r.e.push_back(z);
    }
    return true;
  }
  if (op == "Where") {
    if (in.size() != 3 || !in[1] || !in[2]) return false;
    const size_t len = std::max({a.e.size(), in[1]->e.size(), in[2]->e.size()});
    for (const SymVec* v : in)
      if (v->e.size() != len && v->e.size() != 1) return false;
    for (size_t i = 0; i < len; ++i) {
      const SymEntry& c = a.e[a.e.size() == 1 ? 0 : i];
      if (!c.literal) return false;
      const SymVec& pick = c.value ? *in[1] : *in[2];
      r.e.push_back(pick.e[pick.e.size() == 1 ? 0 : i]);
    }
    r.scalar = a.scalar && in[1]->scalar && in[2]->scalar;
    return true;
  }
  return false;
}

// The output shape of a Reshape / Expand / ConstantOfShape whose shape input is `t`, from the
// data input's type; false when the symbolic target says no more than inference did.
bool shape_from_sym(const ir::Node& n, const std::vector<ops::TensorType>& types, const SymVec& t, Shape& out) {
  if (t.scalar) return false;
  const std::string& op = n.op_type;
  out.clear();
  if (op == "ConstantOfShape") {
    for (const SymEntry& e : t.e) out.push_back(e.as_dim());
    return true;
  }
  if (types.empty() || !types[0].shape) return false;
  const Shape& in = *types[0].shape;
  if (op == "Expand") {
    const size_t rank = std::max(in.size(), t.e.size());
    for (size_t i = 0; i < rank; ++i) {
      const size_t pi = i + in.size(), pt = i + t.e.size();
      const Dim a = pi >= rank ? in[pi - rank] : Dim(1);
      const Dim b = pt >= rank ? t.e[pt - rank].as_dim() : Dim(1);
      auto d = broadcast_dim(a, b);
      if (!d) return false;
      out.push_back(*d);
    }
    return true;
  }
  if (op != "Reshape" || (n.opset >= 14 && n.attrs.get_int("allowzero", 0) != 0)) return false;
  std::optional<size_t> neg;
  for (size_t i = 0; i < t.e.size(); ++i) {
    const SymEntry& e = t.e[i];
    if (e.literal && e.value == -1) {
      if (neg) return false;
      neg = i;
      out.push_back(Dim::unknown());
    } else if (e.literal && e.value == 0) {
      if (i >= in.size()) return false;
      out.push_back(in[i]);
    } else if (e.literal && e.value < -1) {
      return false;
    } else {
      out.push_back(e.as_dim());
    }
  }
  if (neg) out[*neg] = infer_reshape_dim(in, out, *neg);
  return true;
}

}  // namespace

Status propagate(const ir::Graph& g, const std::map<std::string, Shape>& input_shapes, Propagation& out, bool strict,
                 const std::map<std::string, Tensor>* input_values) {
  auto& sym = out.sym;
  for (auto& [name, v] : g.values()) {
    if (v->initializer) {
      out.types[v.get()] = {v->initializer->dtype(), shape_from_dims(v->initializer->dims())};
      out.values[v.get()] = *v->initializer;
    }
  }
  for (ir::Value* in : g.inputs) {
    auto it = input_shapes.find(in->name);
    out.types[in] = {in->dtype, it != input_shapes.end() ? std::optional<Shape>(it->second) : in->shape};
    if (input_values) {
      auto v = input_values->find(in->name);
      if (v != input_values->end()) out.values[in] = v->second;
    }
  }
  for (auto& node : g.nodes()) {
    std::vector<ops::TensorType> types;
    std::vector<const Tensor*> values;
    bool all_known = true;
    int64_t elements = 0;
    for (ir::Value* in : node->inputs) {
      if (!in) {
        types.emplace_back();
        values.push_back(nullptr);
        continue;
      }
      auto t = out.types.find(in);
      types.push_back(t != out.types.end() ? t->second : ops::TensorType{in->dtype, in->shape});
      auto v = out.values.find(in);
      if (v != out.values.end()) {
        values.push_back(&v->second);
        elements += v->second.numel();
      } else {
        values.push_back(nullptr);
        all_known = false;
      }
    }
    // Symbolic shape arithmetic (ONNX domain, one output), kept beside the concrete values: only
    // for the ops that follow shape values, and only where an input is not known as a number.
    std::vector<const SymVec*> syms;
    std::vector<SymVec> literals(node->inputs.size());  // known small int inputs as SymVecs
    if (node->domain.empty() && !all_known && follows_shape_values(node->op_type)) {
      for (size_t i = 0; i < node->inputs.size(); ++i) {
        const ir::Value* in = node->inputs[i];
        auto it = in ? sym.find(in) : sym.end();
        if (it != sym.end())
          syms.push_back(&it->second);
        else if (values[i] && literal_vec(*values[i], literals[i]))
          syms.push_back(&literals[i]);
        else
          syms.push_back(nullptr);
      }
      SymVec r;
      if (node->outputs.size() == 1 && node->outputs[0] && eval_sym(*node, types, syms, values, r))
        sym[node->outputs[0]] = std::move(r);
    }
    if ((node->op_type == "Shape" || node->op_type == "Size") && node->domain.empty() && !types.empty() &&
        node->outputs.size() == 1 && node->outputs[0]) {
      Tensor t;
      if (eval_shape_op(*node, types[0], t)) {
        out.types[node->outputs[0]] = {t.dtype(), shape_from_dims(t.dims())};
        out.values[node->outputs[0]] = std::move(t);
        continue;
      }
    }
    if (all_known && elements <= kEvalElementLimit && !has_subgraph(*node)) {
      std::vector<Tensor> results;
      Status s = ops::run_node(*node, values, results);
      if (s.ok()) {
        bool small = true;
        for (auto& r : results) small = small && r.numel() <= kEvalElementLimit;
        for (size_t i = 0; i < node->outputs.size(); ++i) {
          if (!node->outputs[i]) continue;
          out.types[node->outputs[i]] = {results[i].dtype(), shape_from_dims(results[i].dims())};
          if (small) out.values[node->outputs[i]] = std::move(results[i]);
        }
        continue;
      }
      if (strict) return s;
    }
    // Bodies see this graph's value types by name (ops/control/outer_types.h).
    std::optional<ops::OuterTypes> scope;
    if (has_subgraph(*node))
      scope.emplace([&](const std::string& name) -> const ops::TensorType* {
        auto v = g.values().find(name);
        if (v == g.values().end()) return nullptr;
        auto t = out.types.find(v->second.get());
        return t == out.types.end() ? nullptr : &t->second;
      });
    auto r = ops::infer_node(*node, types, values);
    if (!r.ok()) {
      if (strict) return r.status();
      continue;
    }
    for (size_t i = 0; i < node->outputs.size() && i < r->size(); ++i)
      if (node->outputs[i]) out.types[node->outputs[i]] = (*r)[i];
    // A shape input known only symbolically gives symbolic dims where inference had unknown ones.
    const std::string& op = node->op_type;
    const size_t si = op == "ConstantOfShape" ? 0 : 1;
    if (node->domain.empty() && (op == "Reshape" || op == "Expand" || op == "ConstantOfShape") && si < syms.size() &&
        syms[si] && !r->empty() && node->outputs[0]) {
      ops::TensorType& t = out.types[node->outputs[0]];
      Shape s;
      if (shape_from_sym(*node, types, *syms[si], s) && (!t.shape || t.shape->size() == s.size())) {
        if (t.shape)
          for (size_t i = 0; i < s.size(); ++i)
            if ((*t.shape)[i].known() || (!(*t.shape)[i].name.empty() && !s[i].known())) s[i] = (*t.shape)[i];
        t.shape = s;
      }
    }
  }
  return Status();
}

}  // namespace kiln

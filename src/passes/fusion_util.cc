#include "passes/fusion_util.h"

#include "kiln/builder.h"
#include "ops/conv/conv_internal.h"
#include "ops/layout.h"

#include <algorithm>
#include <set>

namespace kiln::passes {

std::vector<std::string> fused_names(const std::vector<const ir::Node*>& originals) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  auto add = [&](const std::string& n) {
    if (seen.insert(n).second) names.push_back(n);
  };
  for (const ir::Node* n : originals) {
    if (!n) continue;
    const ir::Attribute* a = n->attrs.find(kFusedFromAttr);
    if (a && a->kind == ir::Attribute::Kind::kStrings && !a->strings.empty()) {
      for (const std::string& s : a->strings) add(s);
    } else {
      // Unnamed nodes (graphs built through the API) are shown by their op type.
      add(n->name.empty() ? n->op_type : n->name);
    }
  }
  return names;
}

void set_fused_names(ir::Node& fused, std::vector<std::string> names) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::kStrings;
  a.strings = std::move(names);
  fused.attrs.set(kFusedFromAttr, std::move(a));
}

void record_fusion(ir::Node& fused, const std::vector<const ir::Node*>& originals) {
  set_fused_names(fused, fused_names(originals));
}

std::set<std::string> captured_names(const ir::Graph& g) {
  std::set<std::string> names;
  for (auto& n : g.nodes())
    for (auto& s : ir::subgraph_captures(*n)) names.insert(s);
  return names;
}

bool captured(const ir::Graph& g, const ir::Value* v) {
  if (!v) return false;
  for (auto& n : g.nodes())
    for (auto& s : ir::subgraph_captures(*n))
      if (s == v->name) return true;
  return false;
}

namespace {

void add_body_names(const ir::Graph& body, std::set<std::string>& names) {
  for (auto& [name, v] : body.values()) names.insert(name);
  for (auto& n : body.nodes()) ir::for_each_subgraph(*n, [&](const ir::Graph& sg) { add_body_names(sg, names); });
}

void redirect_in_body(ir::Graph& body, const std::string& from, const ir::Value& to) {
  auto refs = body.outer_references();
  if (std::find(refs.begin(), refs.end(), from) == refs.end()) return;  // not read, or the body defines its own
  const ir::Value* old = body.find_value(from);
  ir::Value* now = body.find_value(to.name);
  if (!now) now = body.add_value(to.name, to.dtype, old && old->shape ? old->shape : to.shape).value();
  for (auto& n : body.nodes()) {
    for (auto& in : n->inputs)
      if (in && in->name == from) in = now;
    ir::for_each_subgraph(*n, [&](ir::Graph& sg) { redirect_in_body(sg, from, to); });
  }
  for (auto& o : body.outputs)
    if (o && o->name == from) o = now;
  body.prune_values();
}

}  // namespace

std::set<std::string> body_value_names(const ir::Graph& g) {
  std::set<std::string> names;
  for (auto& n : g.nodes()) ir::for_each_subgraph(*n, [&](const ir::Graph& sg) { add_body_names(sg, names); });
  return names;
}

void redirect_captures(ir::Graph& g, const std::string& from, const ir::Value& to) {
  for (auto& n : g.nodes()) ir::for_each_subgraph(*n, [&](ir::Graph& sg) { redirect_in_body(sg, from, to); });
}

// A body's read of an outer value is a use no node input shows: without these checks a
// fusion would swallow the value (ONNX's expanded Range reads its delta in a Loop body).
bool unread(const ir::Graph& g, const ir::Value* v) {
  return !v || (!g.is_output(v) && g.consumers(v).empty() && !captured(g, v));
}

ir::Node* only_reader(const ir::Graph& g, const ir::Value* v) {
  if (!v || g.is_output(v)) return nullptr;
  auto c = g.consumers(v);
  return c.size() == 1 && !captured(g, v) ? c[0] : nullptr;
}

bool explicit_pads(const ir::Node& n) {
  const std::string ap = n.attrs.get_string("auto_pad", "NOTSET");
  return ap.empty() || ap == "NOTSET";
}

bool is_onnx_op(const ir::Node* n, const char* op, size_t arity) {
  if (!n || n->op_type != op || !n->domain.empty() || n->inputs.size() != arity) return false;
  for (const ir::Value* v : n->inputs)
    if (!v) return false;
  return n->outputs.size() == 1 && n->outputs[0];
}

ir::Value* other_input(const ir::Node* n, const ir::Value* v) {
  if (n->inputs.size() != 2 || n->inputs[0] == n->inputs[1]) return nullptr;
  if (n->inputs[0] == v) return n->inputs[1];
  if (n->inputs[1] == v) return n->inputs[0];
  return nullptr;
}

bool scalar_constant(const ir::Value* v, size_t max_rank, double& out) {
  if (!v || !v->initializer || v->initializer->numel() != 1) return false;
  if (static_cast<size_t>(v->initializer->rank()) > max_rank) return false;
  out = v->initializer->get_as_double(0);
  return true;
}

bool constant_ints(const ir::Value* v, std::vector<int64_t>& out) {
  if (!v || !v->initializer) return false;
  const Tensor& t = *v->initializer;
  if (t.dtype() != DataType::kInt64 && t.dtype() != DataType::kInt32) return false;
  out.resize(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) out[static_cast<size_t>(i)] = t.get_as_int64(i);
  return true;
}

bool one_axis_slice(const ir::Node* n, int64_t& axis, int64_t& begin, int64_t& end) {
  if (!n || !n->domain.empty() || n->op_type != "Slice" || n->opset < 10 || n->inputs.size() < 3) return false;
  const ir::Value* t = n->inputs[0];
  if (!t || !t->shape) return false;
  const int64_t rank = static_cast<int64_t>(t->shape->size());
  std::vector<int64_t> starts, ends, axes{0}, steps{1};
  if (!constant_ints(n->inputs[1], starts) || !constant_ints(n->inputs[2], ends) || starts.size() != 1 ||
      ends.size() != 1)
    return false;
  if (n->inputs.size() > 3 && n->inputs[3] && !constant_ints(n->inputs[3], axes)) return false;
  if (n->inputs.size() > 4 && n->inputs[4] && !constant_ints(n->inputs[4], steps)) return false;
  if (axes.size() != 1 || steps.size() != 1 || steps[0] != 1) return false;
  axis = axes[0] < 0 ? axes[0] + rank : axes[0];
  if (axis < 0 || axis >= rank) return false;
  const Dim& d = (*t->shape)[static_cast<size_t>(axis)];
  if (!d.known()) return false;
  auto clamp = [&](int64_t x) {
    if (x < 0) x += d.value;
    return std::min(std::max<int64_t>(x, 0), d.value);
  };
  begin = clamp(starts[0]);
  end = clamp(ends[0]);
  return begin < end;
}

Propagation opt_types(const ir::Graph& g, const BuilderConfig& cfg) {
  std::map<std::string, Shape> shapes;
  for (const ir::Value* in : g.inputs) {
    if (!in->shape) return {};
    if (!cfg.profiles().empty() && cfg.profiles()[0].has_shape(in->name))
      shapes[in->name] = shape_from_dims(cfg.profiles()[0].get_opt(in->name));
    else
      shapes[in->name] = *in->shape;
  }
  Propagation p;
  if (!propagate(g, shapes, p, /*strict=*/false).ok()) return {};
  return p;
}

const Shape* opt_shape(const ir::Value* v, const Propagation& opt) {
  auto t = opt.types.find(v);
  if (t != opt.types.end() && t->second.shape) return &*t->second.shape;
  return v->shape ? &*v->shape : nullptr;
}

bool ints_are(const ir::Node& n, const char* name, const std::vector<int64_t>& want, bool absent_ok) {
  if (!n.attrs.has(name)) return absent_ok;
  return n.attrs.get_ints(name) == want;
}

bool half_dtype(DataType t) { return t == DataType::kFloat16 || t == DataType::kBFloat16; }

bool nhwc_conv1x1(const ir::Node& n, DataType dt, int64_t& stride) {
  if (!ops::is_nhwc(n) || ops::has_nchw_input(n) || n.outputs.size() != 1 || !n.outputs[0]) return false;
  if (n.attrs.has(ops::conv::kMaxPoolAttr)) return false;
  if (n.attrs.get_int("group", 1) != 1 || !explicit_pads(n) || !ints_are(n, "kernel_shape", {1, 1}) ||
      !ints_are(n, "dilations", {1, 1}) || !ints_are(n, "pads", {0, 0, 0, 0}))
    return false;
  const std::vector<int64_t> st = n.attrs.get_ints("strides", {1, 1});
  if (st.size() != 2 || st[0] != st[1]) return false;
  stride = st[0];
  int64_t c = 0;
  return conv1x1_operands(n.input(0), n.input(1), n.input(2), dt, c);
}

bool conv1x1_operands(const ir::Value* x, const ir::Value* w, const ir::Value* b, DataType dt, int64_t& c) {
  if (!x || !w || !w->initializer || !x->shape || x->shape->size() != 4) return false;
  if (x->dtype != dt || w->dtype != dt || (b && b->dtype != dt)) return false;
  const Dims& wd = w->initializer->dims();  // OHWI
  const Dim& xc = (*x->shape)[3];
  if (wd.size() != 4 || wd[1] != 1 || wd[2] != 1 || !xc.known() || xc.value != wd[3]) return false;
  c = wd[3];
  return true;
}

int Removals::finish(ir::Graph& g) {
  if (removed_.empty()) return 0;
  g.remove_nodes_if([&](const ir::Node& node) { return removed_.count(&node) != 0; });
  g.prune_values();
  const int n = static_cast<int>(removed_.size());
  removed_.clear();
  return n;
}

bool nhwc_under_2g(const ir::Value* v, int64_t c) {
  constexpr int64_t kMaxElements = int64_t{1} << 31;
  if (!v || !v->shape || v->shape->size() != 4) return true;
  int64_t e = c;
  for (size_t i = 0; i < 3; ++i) {
    const Dim& d = (*v->shape)[i];
    if (!d.known()) return true;
    if (d.value > 0 && e > (kMaxElements - 1) / d.value) return false;  // e * d.value >= kMaxElements
    e *= d.value;
  }
  return e < kMaxElements;
}

}  // namespace kiln::passes

// Conv epilogue fusion: a residual Add and an activation after a Conv fold into
// one FusedConv (com.microsoft), so the GPU writes the output once.
//   y = Conv(x, W, B); a = Add(y, z); r = Relu(a)     becomes   r = FusedConv(x, W, B, z, activation=Relu)
//   y = Conv(x, W, B); s = Sigmoid(y); r = Mul(y, s)  becomes   r = FusedConv(x, W, B, activation=Silu)
// Only values read by nothing else (and not graph outputs) disappear; a Conv with
// neither an Add nor an activation after it stays a Conv.
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

bool is(const ir::Node* n, const char* op) { return n && n->op_type == op && n->domain.empty(); }

// The one node reading `v`, if `v` is internal and read exactly once.
ir::Node* sole_consumer(const ir::Graph& g, const ir::Value* v) {
  if (!v || g.is_output(v)) return nullptr;
  auto c = g.consumers(v);
  return c.size() == 1 ? c[0] : nullptr;
}

bool same_shape(const ir::Value* a, const ir::Value* b) {
  return a && b && a->shape && b->shape && *a->shape == *b->shape && a->dtype == b->dtype;
}

// A float read from a constant input (Clip's min/max), if present and constant.
bool const_scalar(const ir::Node* n, size_t i, float& out) {
  ir::Value* v = n->input(i);
  if (!v) return false;
  if (!v->initializer || v->initializer->numel() != 1) return false;
  out = static_cast<float>(v->initializer->get_as_double(0));
  return true;
}

// Recognizes an activation node reading `in`; fills name/params.
bool activation_of(const ir::Graph& g, ir::Node* n, const ir::Value* in, std::string& name, std::vector<float>& params,
                   ir::Node** extra) {
  *extra = nullptr;
  if (!n || n->inputs.empty() || n->inputs[0] != in) return false;
  if (is(n, "Relu") || is(n, "Tanh")) {
    name = n->op_type;
    return true;
  }
  // Opset-24 Swish (or what fuse_silu makes of x * Sigmoid(x)) with alpha 1 is SiLU.
  if (is(n, "Swish") && n->attrs.get_float("alpha", 1.0f) == 1.0f) {
    name = "Silu";
    return true;
  }
  if (is(n, "LeakyRelu")) {
    name = "LeakyRelu";
    params = {n->attrs.get_float("alpha", 0.01f)};
    return true;
  }
  if (is(n, "HardSigmoid")) {
    name = "HardSigmoid";
    params = {n->attrs.get_float("alpha", 0.2f), n->attrs.get_float("beta", 0.5f)};
    return true;
  }
  if (is(n, "Clip")) {
    float lo = -3.4e38f, hi = 3.4e38f;
    if (n->opset < 11) {
      lo = n->attrs.get_float("min", lo);
      hi = n->attrs.get_float("max", hi);
    } else {
      if (n->input(1) && !const_scalar(n, 1, lo)) return false;
      if (n->input(2) && !const_scalar(n, 2, hi)) return false;
    }
    name = "Clip";
    params = {lo, hi};
    return true;
  }
  return false;
}

}  // namespace

Status fuse_conv_activation(ir::Graph& g, PassContext& ctx) {
  std::vector<const ir::Node*> removed;
  int fused = 0;
  std::vector<ir::Node*> convs;
  for (auto& n : g.nodes())
    if (is(n.get(), "Conv") && n->outputs.size() == 1 && n->outputs[0] && n->inputs.size() >= 2)
      convs.push_back(n.get());
  for (ir::Node* conv : convs) {
    ir::Value* y = conv->outputs[0];
    ir::Value* out = y;
    ir::Value* z = nullptr;
    std::string act;
    std::vector<float> params;
    std::vector<ir::Node*> absorbed;
    // SiLU: Sigmoid(y) and Mul(y, sigmoid) are y's only two readers.
    auto readers = g.is_output(y) ? std::vector<ir::Node*>{} : g.consumers(y);
    if (readers.size() == 2) {
      ir::Node* sig = is(readers[0], "Sigmoid") ? readers[0] : is(readers[1], "Sigmoid") ? readers[1] : nullptr;
      ir::Node* mul = is(readers[0], "Mul") ? readers[0] : is(readers[1], "Mul") ? readers[1] : nullptr;
      if (sig && mul && sig->outputs.size() == 1 && sole_consumer(g, sig->outputs[0]) == mul &&
          mul->inputs.size() == 2 &&
          ((mul->inputs[0] == y && mul->inputs[1] == sig->outputs[0]) ||
           (mul->inputs[1] == y && mul->inputs[0] == sig->outputs[0]))) {
        act = "Silu";
        absorbed = {sig, mul};
        out = mul->outputs[0];
      }
    }
    if (act.empty()) {
      ir::Node* next = sole_consumer(g, y);
      // Residual: Add(y, z) with z of y's exact shape.
      if (is(next, "Add") && next->inputs.size() == 2) {
        ir::Value* other = next->inputs[0] == y ? next->inputs[1] : next->inputs[1] == y ? next->inputs[0] : nullptr;
        if (other && other != y && same_shape(other, y) && same_shape(next->outputs[0], y)) {
          z = other;
          absorbed.push_back(next);
          out = next->outputs[0];
          next = sole_consumer(g, out);
        }
      }
      ir::Node* extra = nullptr;
      if (activation_of(g, next, out, act, params, &extra)) {
        absorbed.push_back(next);
        out = next->outputs[0];
      }
    }
    if (absorbed.empty()) continue;
    std::vector<ir::Value*> ins = {conv->inputs[0], conv->inputs[1], conv->input(2)};
    if (z) ins.push_back(z);
    ir::Node* f = g.add_node("FusedConv", ins, {out}, conv->name);
    f->domain = "com.microsoft";
    f->opset = 1;
    f->attrs = conv->attrs;
    if (!act.empty()) f->attrs.set("activation", ir::Attribute::from_string(act));
    if (!params.empty()) f->attrs.set("activation_params", ir::Attribute::from_floats(params));
    out->producer = f;
    std::vector<const ir::Node*> originals = {conv};
    originals.insert(originals.end(), absorbed.begin(), absorbed.end());
    record_fusion(*f, originals);
    removed.push_back(conv);
    for (ir::Node* a : absorbed) removed.push_back(a);
    ++fused;
  }
  if (!fused) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return std::find(removed.begin(), removed.end(), &n) != removed.end(); });
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  g.opset_imports.emplace("com.microsoft", 1);
  ctx.stats["fused_conv_epilogues"] += fused;
  return Status();
}

}  // namespace kiln::passes

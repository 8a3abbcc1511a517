// Elementwise fusion (CUDA engines): maximal connected groups of elementwise and
// broadcasting nodes become one kiln FusedElementwise, whose program the CUDA
// kernel compiles with NVRTC (src/ops/fused/).
//   a = Mul(x, 0.5); b = Sigmoid(a); y = Add(b, bias)
// becomes
//   y = FusedElementwise(x, bias, program="v1; t0 = Mul(in0, 0.5); t1 = Sigmoid(t0); t2 = Add(t1, in1)")
// A group has one output (its root); every other member's output is read only
// inside the group and is no graph output, nor read by name by a subgraph body
// (a Loop/If body's use is on no node's input list); scalar constants become immediates.
// Groups of one node are left alone (the per-op kernels are as fast).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include "ops/common.h"
#include "ops/fused/fused_program.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

using ops::fused::EwOp;
using ops::fused::Operand;

// One node as instructions over its own operands: kInput = the node's input
// slot, kTemp = an earlier instruction of the same node, kImm = an immediate.
struct Lowered {
  std::vector<ops::fused::Instr> code;
  std::vector<ir::Value*> reads;  ///< the tensor inputs the code reads (kInput indexes node->inputs)
};

bool float_dtype(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16; }

// Builds Lowered for a node, folding scalar constants of rank <= the output's.
class Lowering {
 public:
  Lowering(const ir::Node& n, size_t out_rank) : n_(n), out_rank_(out_rank) {}

  // Operand for input slot i: an immediate if it is a scalar constant, else the
  // tensor (which must be a float tensor of known rank).
  bool operand(size_t i, Operand& out) {
    ir::Value* v = n_.input(i);
    if (!v) return false;
    double c = 0;
    if (scalar_constant(v, out_rank_, c)) {
      out = Operand::immediate(static_cast<float>(c));
      return true;
    }
    if (!float_dtype(v->dtype) || !v->shape) return false;
    out = Operand::input(static_cast<int>(i));
    return true;
  }
  // Appends op(args) and returns its result as an operand.
  Operand emit(EwOp op, std::vector<Operand> args) {
    ops::fused::Instr ins;
    ins.op = op;
    ins.args = std::move(args);
    code_.push_back(std::move(ins));
    return Operand::temp(static_cast<int>(code_.size()) - 1);
  }
  // op(input 0, extra immediates...), the common shape of unary ops with parameters.
  bool unary(EwOp op, std::vector<float> params = {}) {
    Operand x;
    if (n_.inputs.size() != 1 || !operand(0, x) || x.kind == Operand::Kind::kImm) return false;
    std::vector<Operand> args = {x};
    for (float p : params) args.push_back(Operand::immediate(p));
    emit(op, std::move(args));
    return true;
  }
  // Left fold of op over every input (binary ops, and variadic Max/Min/Sum).
  bool fold(EwOp op, size_t min_inputs, size_t max_inputs) {
    if (n_.inputs.size() < min_inputs || n_.inputs.size() > max_inputs) return false;
    std::vector<Operand> xs(n_.inputs.size());
    bool any_tensor = false;
    for (size_t i = 0; i < xs.size(); ++i) {
      if (!operand(i, xs[i])) return false;
      any_tensor = any_tensor || xs[i].kind != Operand::Kind::kImm;
    }
    if (!any_tensor) return false;  // all constant: fold_constants' business
    // Every instruction reads a tensor: a leading pair of constants would not.
    if (xs[0].kind == Operand::Kind::kImm && xs[1].kind == Operand::Kind::kImm) return false;
    Operand acc = xs[0];
    for (size_t i = 1; i < xs.size(); ++i) acc = emit(op, {acc, xs[i]});
    return true;
  }
  std::vector<ops::fused::Instr>& code() { return code_; }

 private:
  const ir::Node& n_;
  size_t out_rank_;
  std::vector<ops::fused::Instr> code_;
};

// Instructions for `n`, or nullopt when the node does not fuse. `allow_cast`:
// Casts between float types join only when reduce_precision will not run (it
// would retype the fused node's inputs and output around an explicit Cast).
std::optional<Lowered> lower(const ir::Node& n, bool allow_cast) {
  if (n.outputs.size() != 1 || !n.outputs[0]) return std::nullopt;
  const ir::Value* y = n.outputs[0];
  if (!float_dtype(y->dtype) || !y->shape) return std::nullopt;
  if (y->shape->size() > 8) return std::nullopt;
  for (const auto& [name, a] : n.attrs.all())
    if (a.g || !a.graphs.empty()) return std::nullopt;
  Lowering l(n, y->shape->size());
  const std::string& op = n.op_type;
  const auto& at = n.attrs;
  bool ok = false;
  if (n.domain.empty()) {
    if (op == "Add")
      ok = l.fold(EwOp::kAdd, 2, 2);
    else if (op == "Sub")
      ok = l.fold(EwOp::kSub, 2, 2);
    else if (op == "Mul")
      ok = l.fold(EwOp::kMul, 2, 2);
    else if (op == "Div")
      ok = l.fold(EwOp::kDiv, 2, 2);
    else if (op == "Max")
      ok = l.fold(EwOp::kMax, 2, 64);
    else if (op == "Min")
      ok = l.fold(EwOp::kMin, 2, 64);
    else if (op == "Sum")
      ok = l.fold(EwOp::kAdd, 2, 64);
    else if (op == "Pow") {
      // The exponent may be any numeric scalar constant; a tensor exponent must be float.
      Operand b, e;
      if (n.inputs.size() == 2 && l.operand(0, b) && b.kind != Operand::Kind::kImm && l.operand(1, e)) {
        l.emit(EwOp::kPow, {b, e});
        ok = true;
      }
    } else if (op == "Neg")
      ok = l.unary(EwOp::kNeg);
    else if (op == "Abs")
      ok = l.unary(EwOp::kAbs);
    else if (op == "Relu")
      ok = l.unary(EwOp::kRelu);
    else if (op == "LeakyRelu")
      ok = l.unary(EwOp::kLeakyRelu, {at.get_float("alpha", 0.01f)});
    else if (op == "Sigmoid")
      ok = l.unary(EwOp::kSigmoid);
    else if (op == "Tanh")
      ok = l.unary(EwOp::kTanh);
    else if (op == "Exp")
      ok = l.unary(EwOp::kExp);
    else if (op == "Log")
      ok = l.unary(EwOp::kLog);
    else if (op == "Sqrt")
      ok = l.unary(EwOp::kSqrt);
    else if (op == "Reciprocal")
      ok = l.unary(EwOp::kReciprocal);
    else if (op == "Erf")
      ok = l.unary(EwOp::kErf);
    else if (op == "Softplus")
      ok = l.unary(EwOp::kSoftplus);
    else if (op == "Softsign")
      ok = l.unary(EwOp::kSoftsign);
    else if (op == "Mish")
      ok = l.unary(EwOp::kMish);
    else if (op == "HardSwish")
      ok = l.unary(EwOp::kHardSwish);
    else if (op == "HardSigmoid")
      ok = l.unary(EwOp::kHardSigmoid, {at.get_float("alpha", 0.2f), at.get_float("beta", 0.5f)});
    else if (op == "Elu")
      ok = l.unary(EwOp::kElu, {at.get_float("alpha", 1.0f)});
    else if (op == "Selu")
      ok = l.unary(EwOp::kSelu, {at.get_float("alpha", 1.67326319217681884765625f),
                                 at.get_float("gamma", 1.05070102214813232421875f)});
    else if (op == "Swish")
      ok = l.unary(EwOp::kSwish, {at.get_float("alpha", 1.0f)});
    else if (op == "Gelu") {
      const std::string mode = at.get_string("approximate", "none");
      if (mode == "none" || mode == "tanh") ok = l.unary(mode == "tanh" ? EwOp::kGeluTanh : EwOp::kGelu);
    } else if (op == "Clip") {
      // Opset < 11: float attributes; later: optional scalar inputs (constants only
      // here), absent ones meaning the float range, as the reference kernel reads them.
      Operand x;
      if (!l.operand(0, x) || x.kind == Operand::Kind::kImm) return std::nullopt;
      Operand lo, hi;
      if (n.opset < 11) {
        if (n.inputs.size() != 1) return std::nullopt;
        lo = Operand::immediate(at.get_float("min", -std::numeric_limits<float>::infinity()));
        hi = Operand::immediate(at.get_float("max", std::numeric_limits<float>::infinity()));
      } else {
        if (n.inputs.size() > 3) return std::nullopt;
        lo = Operand::immediate(std::numeric_limits<float>::lowest());
        hi = Operand::immediate(std::numeric_limits<float>::max());
        for (size_t i = 1; i < 3; ++i) {
          if (!n.input(i)) continue;
          Operand b;
          if (!l.operand(i, b) || b.kind != Operand::Kind::kImm) return std::nullopt;
          (i == 1 ? lo : hi) = b;
        }
      }
      l.emit(EwOp::kClip, {x, lo, hi});
      ok = true;
    } else if (op == "Cast" && allow_cast) {
      const auto to = static_cast<DataType>(at.get_int("to", 0));
      const EwOp c = to == DataType::kFloat32    ? EwOp::kCastF32
                     : to == DataType::kFloat16  ? EwOp::kCastF16
                     : to == DataType::kBFloat16 ? EwOp::kCastBF16
                                                 : EwOp::kCount;
      if (c != EwOp::kCount) ok = l.unary(c);
    }
  } else if (n.domain == "com.microsoft") {
    if (op == "Gelu")
      ok = l.unary(EwOp::kGelu);
    else if (op == "QuickGelu")
      ok = l.unary(EwOp::kSwish, {at.get_float("alpha", 1.702f)});
    else if (op == "FastGelu" || op == "BiasGelu") {
      const EwOp g = op == "FastGelu" ? EwOp::kGeluTanh : EwOp::kGelu;
      Operand x, b;
      if (n.inputs.size() == 1 || (n.inputs.size() == 2 && !n.inputs[1])) {
        ok = op == "FastGelu" && l.operand(0, x) && x.kind != Operand::Kind::kImm;
        if (ok) l.emit(g, {x});
      } else if (n.inputs.size() == 2 && l.operand(0, x) && x.kind != Operand::Kind::kImm && l.operand(1, b)) {
        // The bias is 1-D along the last axis: ordinary broadcasting.
        const ir::Value* bias = n.inputs[1];
        if (bias->shape && bias->shape->size() == 1) {
          l.emit(g, {l.emit(EwOp::kAdd, {x, b})});
          ok = true;
        }
      }
    }
  }
  if (!ok || l.code().empty()) return std::nullopt;
  Lowered r;
  r.code = std::move(l.code());
  for (const auto& ins : r.code)
    for (const Operand& a : ins.args)
      if (a.kind == Operand::Kind::kInput) {
        ir::Value* v = n.inputs[static_cast<size_t>(a.index)];
        // Every tensor an elementwise node reads has its dtype (Pow's exponent aside).
        if (!float_dtype(v->dtype) || !v->shape) return std::nullopt;
        if (std::find(r.reads.begin(), r.reads.end(), v) == r.reads.end()) r.reads.push_back(v);
      }
  return r;
}

// Dims compare as the same: equal values, the same symbol, or both anonymous unknowns.
bool same_dim(const Dim& a, const Dim& b) {
  if (a.known() || b.known()) return a.known() && b.known() && a.value == b.value;
  return a.name == b.name;
}

struct Group {
  std::vector<ir::Node*> nodes;  ///< topological order; the root is last
  std::vector<ir::Value*> inputs;
  std::string program;
};

}  // namespace

Status fuse_elementwise(ir::Graph& g, PassContext& ctx) {
  const BuilderConfig* cfg = ctx.config;
  if (!cfg || cfg->device() != DeviceType::kCUDA) return Status();
  const bool half = cfg->get_flag(BuilderFlag::kFP16) || cfg->get_flag(BuilderFlag::kBF16);
  const bool allow_cast = !half;

  std::unordered_map<const ir::Node*, size_t> pos;
  std::unordered_map<const ir::Node*, Lowered> cand;
  std::unordered_map<const ir::Value*, std::vector<ir::Node*>> readers;
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    ir::Node* n = g.nodes()[i].get();
    pos[n] = i;
    for (ir::Value* v : n->inputs)
      if (v) readers[v].push_back(n);
    if (auto l = lower(*n, allow_cast)) cand.emplace(n, std::move(*l));
  }
  std::set<const ir::Value*> outputs(g.outputs.begin(), g.outputs.end());
  const std::set<std::string> captured = captured_names(g);

  // External inputs of a node set: tensors read by a member and produced outside it.
  auto externals = [&](const std::set<ir::Node*>& members) {
    std::set<const ir::Value*> ext;
    for (ir::Node* m : members)
      for (ir::Value* v : cand.at(m).reads)
        if (!v->producer || !members.count(v->producer)) ext.insert(v);
    return ext.size();
  };
  auto instructions = [&](const std::set<ir::Node*>& members) {
    size_t c = 0;
    for (ir::Node* m : members) c += cand.at(m).code.size();
    return c;
  };

  std::set<const ir::Node*> taken;
  std::vector<Group> groups;
  // Roots from the end, so each group grows backwards as far as it can.
  for (size_t r = g.nodes().size(); r-- > 0;) {
    ir::Node* root = g.nodes()[r].get();
    if (!cand.count(root) || taken.count(root)) continue;
    // reduce_precision keeps Pow in fp32 (x ** 2 overflows fp16 early): a fused Pow
    // keeps that inside the group, but a group ending in one would write fp16.
    if (half && root->op_type == "Pow") continue;
    std::set<ir::Node*> members = {root};
    for (bool grew = true; grew;) {
      grew = false;
      std::vector<ir::Node*> current(members.begin(), members.end());
      for (ir::Node* m : current)
        for (ir::Value* v : cand.at(m).reads) {
          ir::Node* p = v->producer;
          if (!p || members.count(p) || taken.count(p) || !cand.count(p) || outputs.count(v) || captured.count(v->name))
            continue;
          bool inside = true;
          for (ir::Node* c : readers[v]) inside = inside && members.count(c);
          if (!inside) continue;
          members.insert(p);
          if (externals(members) > static_cast<size_t>(ops::fused::kMaxInputs) ||
              instructions(members) > static_cast<size_t>(ops::fused::kMaxInstructions)) {
            members.erase(p);
            continue;
          }
          grew = true;
        }
    }
    if (members.size() < 2) continue;

    Group grp;
    grp.nodes.assign(members.begin(), members.end());
    std::sort(grp.nodes.begin(), grp.nodes.end(), [&](ir::Node* a, ir::Node* b) { return pos[a] < pos[b]; });
    // The program: members in order, node operands mapped to the group's inputs and temporaries.
    ops::fused::Program prog;
    std::map<const ir::Value*, int> input_index, temp_of;
    for (ir::Node* m : grp.nodes) {
      const Lowered& l = cand.at(m);
      const int base = static_cast<int>(prog.code.size());
      for (ops::fused::Instr ins : l.code) {
        for (Operand& a : ins.args) {
          if (a.kind == Operand::Kind::kTemp) {
            a.index += base;
          } else if (a.kind == Operand::Kind::kInput) {
            ir::Value* v = m->inputs[static_cast<size_t>(a.index)];
            auto t = temp_of.find(v);
            if (t != temp_of.end()) {
              a = Operand::temp(t->second);
            } else {
              auto [it, fresh] = input_index.emplace(v, static_cast<int>(grp.inputs.size()));
              if (fresh) grp.inputs.push_back(v);
              a = Operand::input(it->second);
            }
          }
        }
        prog.code.push_back(std::move(ins));
      }
      temp_of[m->outputs[0]] = static_cast<int>(prog.code.size()) - 1;
    }
    // The output must be the broadcast of the group's inputs as inference will see it.
    std::vector<const Shape*> shapes;
    for (ir::Value* v : grp.inputs) shapes.push_back(&*v->shape);
    auto b = ops::broadcast_shapes(shapes);
    const Shape& out = *root->outputs[0]->shape;
    bool same = b && b->size() == out.size();
    for (size_t i = 0; same && i < out.size(); ++i) same = same_dim((*b)[i], out[i]);
    if (!same) continue;
    grp.program = ops::fused::print_program(prog);
    for (ir::Node* m : grp.nodes) taken.insert(m);
    groups.push_back(std::move(grp));
  }
  if (groups.empty()) return Status();

  int fused_nodes = 0;
  std::set<const ir::Node*> removed;
  for (Group& grp : groups) {
    ir::Node* root = grp.nodes.back();
    ir::Value* y = root->outputs[0];
    ir::Node* f = g.add_node("FusedElementwise", grp.inputs, {y}, root->name);
    f->domain = "kiln";
    f->opset = 1;
    f->attrs.set("program", ir::Attribute::from_string(grp.program));
    record_fusion(*f, std::vector<const ir::Node*>(grp.nodes.begin(), grp.nodes.end()));
    y->producer = f;
    for (ir::Node* m : grp.nodes) removed.insert(m);
    fused_nodes += static_cast<int>(grp.nodes.size());
  }
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) != 0; });
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  g.opset_imports.emplace("kiln", 1);
  ctx.stats["fused_elementwise"] += static_cast<int>(groups.size());
  ctx.stats["fused_elementwise_nodes"] += fused_nodes;
  return Status();
}

}  // namespace kiln::passes

// QKV projection merge: the three projections of one fused attention become one GEMM
// whose packed output the attention reads through Slice views (no copy).
//   q = MatMulBias(x, Wq, bq); k = MatMulBias(x, Wk, bk); v = MatMulBias(x, Wv, bv)
//   o = FusedAttention(q, k, v, ...)
// becomes
//   p = MatMulBias(x, [Wq | Wk | Wv], [bq | bk | bv])
//   o = FusedAttention(p, p, p, ...), each view starting with Slice(last axis, its columns)
// Also plain MatMul (no biases). BERT-style exports project Q, K and V separately:
// one GEMM of N = 3E runs better than three of N = E and saves two launches a layer.
// A projection read by anything besides the attention keeps its readers only if
// those read just its shape (transformers' head-split Transpose for a Shape): they
// then read a Slice of the packed output, which never runs (ir/shape_only.h); one a
// subgraph body reads by name is left alone.
#include <algorithm>
#include <cstring>

#include "ir/shape_only.h"
#include "ops/attention/attn_view.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

bool projection(const ir::Node* n) {
  if (!n || n->outputs.size() != 1 || !n->outputs[0]) return false;
  if (n->domain.empty() && n->op_type == "MatMul") return n->inputs.size() == 2;
  return n->domain == "kiln" && n->op_type == "MatMulBias" && n->inputs.size() == 3 &&
         n->attrs.get_string("activation", "").empty();
}

// A rank-2 constant weight [K, N] of a float type.
const Tensor* weight(const ir::Node* n) {
  const ir::Value* w = n->input(1);
  if (!w || !w->initializer || w->initializer->rank() != 2) return nullptr;
  return w->initializer.get();
}

// Row-wise concatenation of [K, Ni] matrices (or of 1-D vectors when K is absent).
Tensor concat_columns(const std::vector<const Tensor*>& parts) {
  const bool vec = parts[0]->rank() == 1;
  const int64_t rows = vec ? 1 : parts[0]->dim(0);
  int64_t cols = 0;
  for (const Tensor* t : parts) cols += t->dims().back();
  Tensor out = Tensor::empty(parts[0]->dtype(), vec ? Dims{cols} : Dims{rows, cols});
  const size_t es = dtype_size(out.dtype());
  auto* dst = static_cast<char*>(out.data());
  for (int64_t r = 0; r < rows; ++r)
    for (const Tensor* t : parts) {
      const int64_t n = t->dims().back();
      std::memcpy(dst, static_cast<const char*>(t->data()) + r * n * es, n * es);
      dst += n * es;
    }
  return out;
}

}  // namespace

Status merge_qkv(ir::Graph& g, PassContext& ctx) {
  if (!ctx.config || ctx.config->device() != DeviceType::kCUDA) return Status();
  std::vector<ir::Node*> attentions;
  for (auto& n : g.nodes())
    if (n->domain == "kiln" && n->op_type == "FusedAttention" && n->inputs.size() >= 3) attentions.push_back(n.get());
  if (attentions.empty()) return Status();
  const auto shape_only = ir::shape_only_nodes(g);
  std::vector<const ir::Node*> removed;
  int merged = 0;
  for (ir::Node* f : attentions) {
    ir::Value* qkv[3] = {f->inputs[0], f->inputs[1], f->inputs[2]};
    if (!qkv[0] || !qkv[1] || !qkv[2] || qkv[0] == qkv[1] || qkv[1] == qkv[2] || qkv[0] == qkv[2]) continue;
    ir::Node* p[3];
    bool ok = true;
    for (int i = 0; i < 3 && ok; ++i) {
      p[i] = qkv[i]->producer;
      // A projection a subgraph body reads by name keeps its own GEMM (and its name).
      ok = projection(p[i]) && weight(p[i]) && !g.is_output(qkv[i]) && !captured(g, qkv[i]) && qkv[i]->shape &&
           !qkv[i]->shape->empty();
    }
    if (!ok) continue;
    const bool bias = p[0]->op_type == "MatMulBias";
    const Tensor* w[3] = {weight(p[0]), weight(p[1]), weight(p[2])};
    for (int i = 0; i < 3 && ok; ++i) {
      ok = p[i]->op_type == p[0]->op_type && p[i]->input(0) == p[0]->input(0) && w[i]->dtype() == w[0]->dtype() &&
           w[i]->dim(0) == w[0]->dim(0);
      if (ok && bias) {
        const ir::Value* b = p[i]->input(2);
        ok = b && b->initializer && b->initializer->rank() == 1 && b->initializer->dtype() == w[0]->dtype() &&
             b->initializer->dim(0) == w[i]->dim(1);
      }
      // The attention reads it as Q/K/V only; anything else reads just its shape.
      for (ir::Node* r : g.consumers(qkv[i])) {
        if (r == f) {
          for (size_t s = 3; s < f->inputs.size(); ++s) ok = ok && f->inputs[s] != qkv[i];
          continue;
        }
        ok = ok && (shape_only.count(r) || ir::reads_type_only(r));
      }
    }
    if (!ok) continue;

    // The packed projection.
    ir::Value* wv = g.add_constant(p[0]->input(1)->name + "_qkv", concat_columns({w[0], w[1], w[2]}));
    std::vector<ir::Value*> ins = {p[0]->input(0), wv};
    if (bias)
      ins.push_back(g.add_constant(p[0]->input(2)->name + "_qkv",
                                   concat_columns({p[0]->input(2)->initializer.get(), p[1]->input(2)->initializer.get(),
                                                   p[2]->input(2)->initializer.get()})));
    const int64_t n_total = w[0]->dim(1) + w[1]->dim(1) + w[2]->dim(1);
    ir::Value* packed = g.add_unique_value(qkv[0]->name + "_qkv", qkv[0]->dtype);
    Shape ps = *qkv[0]->shape;
    ps.back() = Dim(n_total);
    packed->shape = ps;
    ir::Node* mm = g.add_node(p[0]->op_type, ins, {packed}, g.unique_name(p[0]->name + "/qkv"));
    mm->domain = p[0]->domain;
    mm->opset = p[0]->opset;
    packed->producer = mm;
    record_fusion(*mm, {p[0], p[1], p[2]});

    // Each view starts by slicing its columns out of the packed rows.
    const char* views[3] = {"q_view", "k_view", "v_view"};
    int64_t start = 0;
    for (int i = 0; i < 3; ++i) {
      const int64_t n = w[i]->dim(1);
      const ir::Attribute* a = f->attrs.find(views[i]);
      std::vector<int64_t> code;
      ops::attn::encode_step(code, ops::attn::kSlice, {-1, start, start + n, 1});
      if (a) code.insert(code.end(), a->ints.begin(), a->ints.end());
      f->attrs.set(views[i], ir::Attribute::from_ints(code));
      f->inputs[static_cast<size_t>(i)] = packed;
      // Shape readers get a Slice of the packed output with the old shape (never run).
      std::vector<ir::Node*> rest = g.consumers(qkv[i]);
      if (!rest.empty()) {
        const int64_t rank = static_cast<int64_t>(qkv[i]->shape->size());
        auto i64 = [&](const char* hint, int64_t v) {
          return g.add_constant(hint, Tensor::from_vector<int64_t>(DataType::kInt64, {1}, {v}));
        };
        ir::Node* sl =
            g.add_node("Slice", {packed, i64("qkv_start", start), i64("qkv_end", start + n), i64("qkv_axis", rank - 1)},
                       {qkv[i]}, g.unique_name(qkv[i]->name + "/qkv_slice"));
        sl->opset = 13;
        qkv[i]->producer = sl;
      }
      start += n;
      removed.push_back(p[i]);
    }
    ++merged;
  }
  if (!merged) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return std::find(removed.begin(), removed.end(), &n) != removed.end(); });
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  ctx.stats["merged_qkv_projections"] += merged;
  return Status();
}

}  // namespace kiln::passes

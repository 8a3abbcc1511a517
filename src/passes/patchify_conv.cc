// Patchify convolutions (CUDA engines): a Conv whose kernel equals its stride reads non-overlapping
// patches, so it is one GEMM over them, which cuBLASLt runs far faster than cuDNN runs a 3-channel
// conv (ViT's patch embedding: 0.6 ms of cuDNN for 0.02 ms of FLOPs at batch 32).
//   y = Conv(x[N,C,H,W], w[M,C,kh,kw], b, strides = kernel, no pads)     becomes
//   p = Reshape(Transpose(Reshape(x, [0,C,H/kh,kh,W/kw,kw]), (0,2,4,1,3,5)), [-1, C*kh*kw])
//   y = Transpose(Reshape(MatMulBias(p, w'[C*kh*kw, M], b), [-1, H/kh, W/kw, M]), (0,3,1,2))
// (plain MatMul without a bias; 1-D and 3-D convs alike). In FP32 the GEMM carries
// kiln.exact_fp32 = 1: no TF32 for it even where the engine allows TF32. When y is read only by a Reshape to
// [N, M, P] and a Transpose(0,2,1) (ViT's flatten(2).transpose(1,2)), that pair becomes a Reshape
// of the GEMM's output to [-1, P, M] and the output Transpose disappears.
//
// It runs right after fold_conv_batchnorm (the conv has its folded bias), before
// fuse_conv_activation (an activation after the conv stays a node of its own) and
// eliminate_dead_nodes (which drops the shape arithmetic of a folded Reshape); it emits
// MatMulBias itself rather than leave an Add for fuse_matmul_bias. Convs inside convolutional
// networks (read from, or feeding, another conv/pool/BatchNormalization through elementwise ops)
// and 1x1 convs stay: there nhwc_layout keeps them channels-last, where cuDNN needs neither of
// the two transposes this form costs.
#include <cstring>
#include <set>

#include "ops/op.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

bool float_dtype(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16; }

bool conv_net_op(const ir::Node* n) {
  if (!n) return false;
  static const std::set<std::string> ops = {"Conv",
                                            "ConvTranspose",
                                            "MaxPool",
                                            "AveragePool",
                                            "LpPool",
                                            "GlobalAveragePool",
                                            "GlobalMaxPool",
                                            "BatchNormalization",
                                            "InstanceNormalization",
                                            "FusedConv"};
  return (n->domain.empty() || n->domain == "com.microsoft") && ops.count(n->op_type);
}

// Elementwise ops a conv net puts between its convs (activations, residual adds, scales).
bool elementwise_op(const ir::Node* n) {
  static const std::set<std::string> ops = {
      "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Swish", "Tanh", "Elu",  "Selu",    "Mish",
      "Gelu", "Softplus",  "Add",  "Sub",     "Mul",         "Div",       "Max",   "Min",  "Cast", "Identity"};
  return n && n->domain.empty() && ops.count(n->op_type);
}

// True when `v` comes from a conv-net op through at most a few elementwise ops.
bool produced_by_conv_net(const ir::Value* v, int depth = 0) {
  const ir::Node* p = v ? v->producer : nullptr;
  if (!p || depth > 4) return false;
  if (conv_net_op(p)) return true;
  if (!elementwise_op(p)) return false;
  for (const ir::Value* in : p->inputs)
    if (in && !in->initializer && produced_by_conv_net(in, depth + 1)) return true;
  return false;
}

// True when `v` reaches a conv-net op through at most a few elementwise ops.
bool read_by_conv_net(const ir::Graph& g, const ir::Value* v, int depth = 0) {
  if (depth > 4) return false;
  for (const ir::Node* c : g.consumers(v)) {
    if (conv_net_op(c)) return true;
    if (elementwise_op(c) && c->outputs.size() == 1 && read_by_conv_net(g, c->outputs[0], depth + 1)) return true;
  }
  return false;
}

// One element of a shape tensor: a known integer, or dim `axis` of value `of`.
struct ShapeElem {
  int64_t value = -1;
  bool known = false;
  const ir::Value* of = nullptr;
  int64_t axis = -1;
};

// The elements of a 1-D int shape tensor built from constants and Shape/Gather/Unsqueeze/Concat
// (as exporters build Reshape targets from x.shape); false when it is built otherwise.
bool shape_elems(const ir::Value* v, std::vector<ShapeElem>& out, int depth = 0) {
  if (!v || depth > 8) return false;
  std::vector<int64_t> c;
  if (constant_ints(v, c)) {
    if (v->initializer->rank() > 1) return false;
    for (int64_t x : c) out.push_back({x, true, nullptr, -1});
    return true;
  }
  const ir::Node* p = v->producer;
  if (!p || !p->domain.empty() || p->inputs.empty() || !p->inputs[0]) return false;
  const ir::Value* in = p->inputs[0];
  if (p->op_type == "Concat" && p->attrs.get_int("axis", 0) == 0) {
    for (const ir::Value* part : p->inputs)
      if (!shape_elems(part, out, depth + 1)) return false;
    return true;
  }
  if (p->op_type == "Unsqueeze" || p->op_type == "Squeeze" || p->op_type == "Cast" || p->op_type == "Identity" ||
      (p->op_type == "Reshape" && v->shape && v->shape->size() == 1)) {
    std::vector<ShapeElem> e;
    if (!shape_elems(in, e, depth + 1)) return false;
    if (p->op_type != "Cast" && p->op_type != "Identity" && p->op_type != "Reshape" && e.size() != 1) return false;
    out.insert(out.end(), e.begin(), e.end());
    return true;
  }
  if (p->op_type == "Shape" && !p->attrs.has("start") && !p->attrs.has("end")) {
    if (!in->shape) return false;
    for (size_t i = 0; i < in->shape->size(); ++i) {
      const Dim& d = (*in->shape)[i];
      out.push_back({d.known() ? d.value : -1, d.known(), in, static_cast<int64_t>(i)});
    }
    return true;
  }
  if (p->op_type == "Gather" && p->attrs.get_int("axis", 0) == 0 && p->inputs.size() == 2) {
    std::vector<int64_t> idx;
    std::vector<ShapeElem> all;
    if (!constant_ints(p->inputs[1], idx) || !shape_elems(in, all, depth + 1)) return false;
    for (int64_t i : idx) {
      if (i < 0) i += static_cast<int64_t>(all.size());
      if (i < 0 || i >= static_cast<int64_t>(all.size())) return false;
      out.push_back(all[static_cast<size_t>(i)]);
    }
    return true;
  }
  return false;
}

// True when `e` is dim 0 of x (the conv input) or of y (its output): the batch.
bool is_batch(const ShapeElem& e, const ir::Value* x, const ir::Value* y) {
  const Dim& n = (*x->shape)[0];
  if (e.known) return n.known() && n.value == e.value;
  if (!e.of || e.axis < 0 || !e.of->shape || e.axis >= static_cast<int64_t>(e.of->shape->size())) return false;
  if ((e.of == x || e.of == y) && e.axis == 0) return true;
  const Dim& d = (*e.of->shape)[static_cast<size_t>(e.axis)];
  return !d.known() && !d.name.empty() && d == n;
}

struct Patchify {
  std::vector<int64_t> kernel, out;  ///< per spatial dim
  int64_t c = 0, m = 0;
};

// The patch geometry when `conv` is a non-overlapping patch conv this pass rewrites.
bool patch_conv(const ir::Graph& g, const ir::Node& conv, Patchify& p) {
  const bool fused = conv.domain == "com.microsoft" && conv.op_type == "FusedConv";
  if (!(conv.domain.empty() && conv.op_type == "Conv") && !fused) return false;
  if (fused && (!conv.attrs.get_string("activation", "").empty() || conv.input(3))) return false;
  if (conv.inputs.size() < 2 || conv.inputs.size() > (fused ? 4u : 3u) || conv.outputs.size() != 1) return false;
  const ir::Value* x = conv.input(0);
  const ir::Value* w = conv.input(1);
  const ir::Value* b = conv.input(2);
  const ir::Value* y = conv.outputs[0];
  if (!x || !w || !y || !x->shape || !y->shape || !w->initializer || !float_dtype(x->dtype)) return false;
  if (w->dtype != x->dtype || y->dtype != x->dtype) return false;
  const Shape& xs = *x->shape;
  const size_t spatial = xs.size() >= 3 ? xs.size() - 2 : 0;
  if (spatial < 1 || spatial > 3 || w->initializer->rank() != static_cast<int64_t>(xs.size())) return false;
  if (b && (b->dtype != x->dtype || !b->shape || b->shape->size() != 1)) return false;
  if (conv.attrs.get_int("group", 1) != 1) return false;
  const std::string ap = conv.attrs.get_string("auto_pad", "NOTSET");
  if (!ap.empty() && ap != "NOTSET" && ap != "VALID") return false;
  const Dims& wd = w->initializer->dims();
  p.m = wd[0];
  p.c = wd[1];
  if (!xs[1].known() || xs[1].value != p.c) return false;
  p.kernel.assign(wd.begin() + 2, wd.end());
  std::vector<int64_t> ks = conv.attrs.get_ints("kernel_shape", p.kernel);
  std::vector<int64_t> strides = conv.attrs.get_ints("strides", std::vector<int64_t>(spatial, 1));
  std::vector<int64_t> dil = conv.attrs.get_ints("dilations", std::vector<int64_t>(spatial, 1));
  std::vector<int64_t> pads = conv.attrs.get_ints("pads", std::vector<int64_t>(2 * spatial, 0));
  if (ks != p.kernel || strides != p.kernel || dil != std::vector<int64_t>(spatial, 1)) return false;
  if (ap == "NOTSET" || ap.empty())
    for (int64_t q : pads)
      if (q != 0) return false;
  int64_t volume = 1;
  p.out.clear();
  for (size_t i = 0; i < spatial; ++i) {
    const Dim& d = xs[i + 2];
    const int64_t k = p.kernel[i];
    if (k < 1 || !d.known() || d.value % k != 0 || d.value == 0) return false;
    p.out.push_back(d.value / k);
    volume *= k;
  }
  // A 1x1 conv needs no patches: it is a GEMM over channels already, and cuDNN's is fine.
  if (volume == 1) return false;
  return !produced_by_conv_net(x) && !read_by_conv_net(g, y);
}

Tensor transposed_weight(const Tensor& w, int64_t m, int64_t k) {
  Tensor t = Tensor::empty(w.dtype(), {k, m});
  const size_t es = dtype_size(w.dtype());
  const auto* src = static_cast<const char*>(w.data());
  auto* dst = static_cast<char*>(t.data());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < k; ++j) std::memcpy(dst + (j * m + i) * es, src + (i * k + j) * es, es);
  return t;
}

}  // namespace

Status patchify_conv(ir::Graph& g, PassContext& ctx) {
  const BuilderConfig* cfg = ctx.config;
  if (!cfg || cfg->device() != DeviceType::kCUDA) return Status();
  const bool fp32_engine = !cfg->get_flag(BuilderFlag::kFP16) && !cfg->get_flag(BuilderFlag::kBF16);
  std::vector<ir::Node*> convs;
  for (auto& n : g.nodes()) convs.push_back(n.get());
  std::set<const ir::Node*> removed;
  int rewritten = 0, flattened = 0;
  for (ir::Node* conv : convs) {
    Patchify p;
    if (!patch_conv(g, *conv, p)) continue;
    ir::Value* x = conv->inputs[0];
    ir::Value* y = conv->outputs[0];
    const DataType dt = x->dtype;
    const auto sp = static_cast<int64_t>(p.kernel.size());
    auto ints = [&](const std::string& hint, const std::vector<int64_t>& v) {
      return g.add_constant(conv->name + hint,
                            Tensor::from_vector<int64_t>(DataType::kInt64, {static_cast<int64_t>(v.size())}, v));
    };
    auto node = [&](const std::string& op, std::vector<ir::Value*> ins, ir::Value* out, const std::string& suffix) {
      ir::Node* n = g.add_node(op, ins, {out}, g.unique_name(conv->name + suffix));
      n->opset = 13;
      out->producer = n;
      return n;
    };
    auto value = [&](const std::string& suffix, Shape s) {
      ir::Value* v = g.add_unique_value(y->name + suffix, dt);
      v->shape = std::move(s);
      return v;
    };
    const Dim n_dim = (*x->shape)[0];
    int64_t patches = 1, patch = p.c;
    for (int64_t i = 0; i < sp; ++i) {
      patches *= p.out[i];
      patch *= p.kernel[i];
    }
    const Dim rows = n_dim.known() ? Dim(n_dim.value * patches) : Dim::unknown();

    // x[N, C, o1, k1, o2, k2, ...] -> [N, o1, o2, ..., C, k1, k2, ...] -> [N*P, C*K].
    std::vector<int64_t> split = {0, p.c}, perm = {0};
    Shape split_shape = {n_dim, p.c}, perm_shape = {n_dim};
    for (int64_t i = 0; i < sp; ++i) {
      split.insert(split.end(), {p.out[i], p.kernel[i]});
      split_shape.insert(split_shape.end(), {p.out[i], p.kernel[i]});
      perm.push_back(2 + 2 * i);
      perm_shape.push_back(p.out[i]);
    }
    perm.push_back(1);
    perm_shape.push_back(p.c);
    for (int64_t i = 0; i < sp; ++i) {
      perm.push_back(3 + 2 * i);
      perm_shape.push_back(p.kernel[i]);
    }
    ir::Value* xs = value("_patches5", split_shape);
    node("Reshape", {x, ints("_patch_split", split)}, xs, "_patch_split");
    ir::Value* xt = value("_patches_t", perm_shape);
    node("Transpose", {xs}, xt, "_patch_transpose")->attrs.set("perm", ir::Attribute::from_ints(perm));
    ir::Value* rows_in = value("_patch_rows", Shape{rows, patch});
    node("Reshape", {xt, ints("_patch_rows", {-1, patch})}, rows_in, "_patch_rows");

    // The GEMM over patches: w[M, C, k...] as [C*K, M].
    ir::Value* wt = g.add_constant(conv->inputs[1]->name + "_patch_gemm",
                                   transposed_weight(*conv->inputs[1]->initializer, p.m, patch));
    ir::Value* gy = value("_patch_gemm", Shape{rows, p.m});
    ir::Node* mm;
    if (conv->input(2)) {
      mm = node("MatMulBias", {rows_in, wt, conv->inputs[2]}, gy, "_patch_gemm");
      mm->domain = "kiln";
      mm->opset = 1;
      g.opset_imports.emplace("kiln", 1);
    } else {
      mm = node("MatMul", {rows_in, wt}, gy, "_patch_gemm");
    }
    // FP32: exact FP32 arithmetic (the TF32 GEMM moved ViT-B/16's FP32 output past 1e-3 of
    // PyTorch's: 1.10e-3 at batch 32, H100), still far faster than cuDNN's FP32 conv.
    if (fp32_engine && dt == DataType::kFloat32) mm->attrs.set(ops::kExactFp32Attr, ir::Attribute::from_int(1));
    record_fusion(*mm, {conv});

    // ViT's y.reshape(N, M, P).transpose(1, 2) is the GEMM's output as [N, P, M].
    ir::Node* r = only_reader(g, y);
    ir::Node* t = r && is_onnx_op(r, "Reshape", 2) && r->inputs[0] == y && r->attrs.get_int("allowzero", 0) == 0
                      ? only_reader(g, r->outputs[0])
                      : nullptr;
    std::vector<ShapeElem> target;
    bool flatten = t && is_onnx_op(t, "Transpose", 1) && t->attrs.get_ints("perm") == std::vector<int64_t>{0, 2, 1} &&
                   shape_elems(r->inputs[1], target) && target.size() == 3;
    if (flatten) {
      const ShapeElem &e0 = target[0], &e1 = target[1], &e2 = target[2];
      // A 0 copies y's dim (the batch, then M); one -1 is inferred from the others.
      const bool rows_known = e2.known && e2.value == patches;
      flatten = (is_batch(e0, x, y) || (e0.known && (e0.value == 0 || (e0.value == -1 && rows_known)))) && e1.known &&
                (e1.value == p.m || e1.value == 0) && (rows_known || (e2.known && e2.value == -1));
    }
    if (flatten) {
      ir::Value* z = t->outputs[0];
      node("Reshape", {gy, ints("_patch_tokens", {-1, patches, p.m})}, z, "_patch_tokens");
      removed.insert({conv, r, t});
      ++flattened;
    } else {
      // [N*P, M] -> [N, o1, o2, ..., M] -> [N, M, o1, o2, ...].
      Shape grid = {n_dim};
      std::vector<int64_t> grid_target = {-1}, back = {0, sp + 1};
      for (int64_t i = 0; i < sp; ++i) {
        grid.push_back(p.out[i]);
        grid_target.push_back(p.out[i]);
        back.push_back(1 + i);
      }
      grid.push_back(p.m);
      grid_target.push_back(p.m);
      ir::Value* gg = value("_patch_grid", grid);
      node("Reshape", {gy, ints("_patch_grid", grid_target)}, gg, "_patch_grid");
      node("Transpose", {gg}, y, "_patch_nchw")->attrs.set("perm", ir::Attribute::from_ints(back));
      removed.insert(conv);
    }
    ++rewritten;
  }
  if (!rewritten) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) != 0; });
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  ctx.stats["patchified_convs"] += rewritten;
  ctx.stats["patchified_convs_flattened"] += flattened;
  return Status();
}

}  // namespace kiln::passes

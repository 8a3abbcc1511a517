// Space-to-depth stems (CUDA engines with --fp16/--bf16, batches of 8 and more at the opt
// shapes): a stride-2 conv over a few input channels (ResNet's 7x7 stem on RGB) is a
// stride-1 conv over the 2x2 blocks of its padded input, which cuDNN runs as an ordinary
// implicit GEMM over 16 channels instead of a kernel for 8 channels that reads 7x7 windows
// (ResNet-50 bs256 on the H100: 1.23 ms of 8.3, the largest layer).
//   y = Conv(x[N,C,H,W], w[M,C,kh,kw], b, strides (2,2), pads (t,l,b,r))      becomes
//   z  = Transpose(SpaceToDepthNhwc(x, pads (t+e, l+f, b', r'), channels 4), (0,3,1,2))
//                                                          [N, 16, Hp/2, Wp/2] (kiln domain)
//   y  = Conv(z, w'[M, 16, ceil((kh+e)/2), ceil((kw+f)/2)], b)          (stride 1, no pads)
// with e = t % 2 (an odd leading pad becomes even by shifting the kernel down a row whose
// weights are zero) and likewise f, b' and r' the least trailing pads that make Hp, Wp
// even and cover every window, and w'[o, (2p + q) 4 + c, a, s] = w[o, c, 2a + p - e,
// 2s + q - f] (zero outside the kernel and for the padded channels). SpaceToDepthNhwc
// (ops/generate/space_depth.cc) pads, adds the fourth channel and gathers the blocks
// channels-last in one pass; the Transpose turns that to NCHW for the Conv, nhwc_layout
// puts the inverse before the channels-last Conv and the cancel_transposes after it
// removes the pair: x -> SpaceToDepthNhwc -> Conv[nhwc] over 16 channels. On the H100 the
// generic Pad and 6-D Transpose kernels took 0.63 and 0.98 ms at batch 256 for this.
// Runs after fold_conv_batchnorm (the bias is folded) and before fuse_conv_activation,
// which then fuses the new Conv's Relu as it would have the old one's.
#include <set>

#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

constexpr int64_t kMinBatch = 8;  // smaller batches keep the stem as it is (the extra kernels' launches)

struct Stem {
  int64_t c = 0, h = 0, w = 0, m = 0, kh = 0, kw = 0;
  int64_t t = 0, l = 0, b = 0, r = 0;  ///< the conv's pads
  int64_t e = 0, f = 0;                ///< the kernel's shift (odd leading pads)
  int64_t hp = 0, wp = 0;              ///< padded input dims (even)
  int64_t oh = 0, ow = 0;              ///< output dims
  int64_t kh2 = 0, kw2 = 0;            ///< the new kernel
};

bool stem_conv(const ir::Node& conv, const Propagation& opt, Stem& s) {
  if (!conv.domain.empty() || conv.op_type != "Conv" || conv.inputs.size() < 2 || conv.inputs.size() > 3 ||
      conv.outputs.size() != 1)
    return false;
  const ir::Value* x = conv.input(0);
  const ir::Value* w = conv.input(1);
  const ir::Value* b = conv.input(2);
  const ir::Value* y = conv.outputs[0];
  if (!x || !w || !y || !x->shape || !w->initializer || x->dtype != DataType::kFloat32 || w->dtype != x->dtype)
    return false;
  if (b && (!b->initializer || b->dtype != x->dtype)) return false;
  const Shape& xs = *x->shape;
  if (xs.size() != 4 || w->initializer->rank() != 4 || conv.attrs.get_int("group", 1) != 1) return false;
  if (!explicit_pads(conv)) return false;
  if (conv.attrs.get_ints("strides", {1, 1}) != std::vector<int64_t>{2, 2} ||
      conv.attrs.get_ints("dilations", {1, 1}) != std::vector<int64_t>{1, 1})
    return false;
  const Dims& wd = w->initializer->dims();
  s.m = wd[0], s.c = wd[1], s.kh = wd[2], s.kw = wd[3];
  if (conv.attrs.get_ints("kernel_shape", {s.kh, s.kw}) != std::vector<int64_t>{s.kh, s.kw}) return false;
  // 7x7 and 5x5 stems over RGB(A); 3x3 ones (YOLO's) stay with kiln's direct conv.
  if (s.c > 4 || s.kh < 5 || s.kw < 5 || !xs[1].known() || xs[1].value != s.c || !xs[2].known() || !xs[3].known())
    return false;
  const std::vector<int64_t> pads = conv.attrs.get_ints("pads", {0, 0, 0, 0});
  if (pads.size() != 4) return false;
  s.t = pads[0], s.l = pads[1], s.b = pads[2], s.r = pads[3];
  for (int64_t p : pads)
    if (p < 0) return false;
  s.h = xs[2].value, s.w = xs[3].value;
  s.oh = (s.h + s.t + s.b - s.kh) / 2 + 1;
  s.ow = (s.w + s.l + s.r - s.kw) / 2 + 1;
  if (s.oh < 1 || s.ow < 1) return false;
  s.e = s.t % 2, s.f = s.l % 2;
  s.kh2 = (s.kh + s.e + 1) / 2, s.kw2 = (s.kw + s.f + 1) / 2;
  // Padded rows: output row i reads block rows i .. i + kh2 - 1.
  s.hp = 2 * (s.oh + s.kh2 - 1), s.wp = 2 * (s.ow + s.kw2 - 1);
  if (s.hp < s.h + s.t + s.e || s.wp < s.w + s.l + s.f) return false;  // never: the windows cover the input
  // Profit: only where the batch is large enough for the stem to matter.
  const Shape* at_opt = opt_shape(x, opt);
  const Dim& n = at_opt && at_opt->size() == 4 ? (*at_opt)[0] : xs[0];
  return n.known() && n.value >= kMinBatch;
}

// w'[o, (2p + q) * 4 + c, a, s] = w[o, c, 2a + p - e, 2s + q - f].
Tensor block_weight(const Tensor& w, const Stem& s) {
  Tensor out = Tensor::zeros(DataType::kFloat32, {s.m, 16, s.kh2, s.kw2});
  const float* src = w.data_as<float>();
  float* dst = out.data_as<float>();
  for (int64_t o = 0; o < s.m; ++o)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t i = 0; i < s.kh; ++i)
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t ii = i + s.e, jj = j + s.f;  // the shifted kernel's row and column
          const int64_t ch = ((ii % 2) * 2 + jj % 2) * 4 + c;
          dst[((o * 16 + ch) * s.kh2 + ii / 2) * s.kw2 + jj / 2] = src[((o * s.c + c) * s.kh + i) * s.kw + j];
        }
  return out;
}

}  // namespace

Status space_to_depth_stem(ir::Graph& g, PassContext& ctx) {
  const BuilderConfig* cfg = ctx.config;
  if (!cfg || cfg->device() != DeviceType::kCUDA ||
      (!cfg->get_flag(BuilderFlag::kFP16) && !cfg->get_flag(BuilderFlag::kBF16)))
    return Status();
  const Propagation opt = opt_types(g, *cfg);
  std::vector<ir::Node*> convs;
  for (auto& n : g.nodes()) convs.push_back(n.get());
  std::set<const ir::Node*> removed;
  for (ir::Node* conv : convs) {
    Stem s;
    if (!stem_conv(*conv, opt, s)) continue;
    ir::Value* x = conv->inputs[0];
    ir::Value* y = conv->outputs[0];
    const Dim nd = (*x->shape)[0];
    auto value = [&](const std::string& suffix, Shape shape) {
      ir::Value* v = g.add_unique_value(x->name + suffix, x->dtype);
      v->shape = std::move(shape);
      return v;
    };
    auto node = [&](const std::string& op, std::vector<ir::Value*> ins, ir::Value* out, const std::string& suffix) {
      ir::Node* n = g.add_node(op, ins, {out}, g.unique_name(conv->name + suffix));
      n->opset = 13;
      out->producer = n;
      return n;
    };
    const int64_t bh = s.hp / 2, bw = s.wp / 2;
    ir::Value* zn = value("_s2d_nhwc", Shape{nd, bh, bw, 16});
    ir::Node* blocks = node("SpaceToDepthNhwc", {x}, zn, "_s2d_blocks");
    blocks->domain = "kiln";
    blocks->opset = 1;
    g.opset_imports.emplace("kiln", 1);
    blocks->attrs.set("pads",
                      ir::Attribute::from_ints({s.t + s.e, s.l + s.f, s.hp - s.h - s.t - s.e, s.wp - s.w - s.l - s.f}));
    blocks->attrs.set("channels", ir::Attribute::from_int(4));
    ir::Value* z = value("_s2d", Shape{nd, 16, bh, bw});
    node("Transpose", {zn}, z, "_s2d_nchw")->attrs.set("perm", ir::Attribute::from_ints({0, 3, 1, 2}));
    ir::Value* w2 = g.add_constant(conv->inputs[1]->name + "_s2d", block_weight(*conv->inputs[1]->initializer, s));
    std::vector<ir::Value*> ins = {z, w2};
    if (conv->input(2)) ins.push_back(conv->inputs[2]);
    ir::Node* c2 = node("Conv", ins, y, "_s2d");
    c2->opset = conv->opset;
    c2->attrs.set("kernel_shape", ir::Attribute::from_ints({s.kh2, s.kw2}));
    c2->attrs.set("strides", ir::Attribute::from_ints({1, 1}));
    c2->attrs.set("pads", ir::Attribute::from_ints({0, 0, 0, 0}));
    record_fusion(*c2, {conv});
    removed.insert(conv);
  }
  if (removed.empty()) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) != 0; });
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  ctx.stats["space_to_depth_stems"] += static_cast<int>(removed.size());
  return Status();
}

}  // namespace kiln::passes

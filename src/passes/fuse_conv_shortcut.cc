// A bottleneck block's projection shortcut fused into its last 1x1 conv (CUDA engines, channels-last,
// after nhwc_layout):
//   r = Conv[nhwc](x, Wd, bd; 1x1, strides [s, s], s in {1, 2})    (or a FusedConv without activation or Z)
//   y = FusedConv[nhwc](h, W3, b3, Z = r; 1x1, stride 1, Relu or none)
// becomes
//   y = FusedConv[nhwc](h, W3, b3, "", x, Wd, bd; kiln.shortcut_strides = [s, s])
// which kiln's conv + shortcut kernel (ops/conv/conv_shortcut_cuda.h) runs as one GEMM over
// [h | x-strided] x [W3 | Wd]: r is never written nor read back (ResNet-50 bs256 layer1: 411 MB each
// way). That kernel's win is bytes. Per output pixel the fused GEMM does 2 M (C1 + C2) FLOPs and
// moves 2 (C1 + C2 + M) bytes of FP16/BF16 activations (the weights stay in cache), so its
// intensity is M (C1 + C2) / (C1 + C2 + M) FLOPs a byte. The H100 SXM's dense FP16 peak over its
// memory bandwidth (989 TFLOP/s / 3.35 TB/s) puts the ridge near 295, and kiln's kernel (a
// memory-bound design, mma.sync or a Hopper wgmma one) reaches less of that peak than cuBLASLt's
// compute-bound ones: at most 256 the GEMM is memory bound and the saved bytes win; above it
// compute dominates and cuBLASLt's two calls are as fast or faster. ResNet-50: layer1 (C1 64 +
// C2 64 -> M 256: 85) and layer2 (128 + 256 -> 512: 219) fuse; layer3 (256 + 512 -> 1024: 439)
// and layer4 (512 + 1024 -> 2048: 878) do not. Measured (session 23, H100, bs256): fusing layers
// 1-2 6.493 -> 6.129 GPU ms; layers 3-4 as well (KILN_SHORTCUT_MAX_INTENSITY=100000) 6.246.
// Fused only where that kernel takes the pair at every shape the engine allows: FP16/BF16,
// constant OHWI weights, C1 and C2 multiples of 64 and M of 128, all statically known, no
// groups, padding or dilation; r is read by the FusedConv alone, as its Z, and is no graph output.
#include <set>
#include <string>
#include <vector>

#include "base/env.h"
#include "ops/conv/conv_internal.h"
#include "ops/layout.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

constexpr int64_t kChannelAlign = 64;   // C1, C2: the kernel's K tiles
constexpr int64_t kOutputAlign = 128;   // M: its N tiles
constexpr int64_t kMaxIntensity = 256;  // FLOPs a byte; see the file comment

// KILN_SHORTCUT_MAX_INTENSITY overrides kMaxIntensity (an A/B switch: 0 fuses nothing).
int64_t max_intensity() {
  static const int64_t v = env_int("KILN_SHORTCUT_MAX_INTENSITY").value_or(kMaxIntensity);
  return v;
}

// A channels-last 1x1 conv without groups, padding or dilation over a constant OHWI weight of `dt`
// (nhwc_conv1x1), not itself carrying a shortcut; its strides in `s`.
bool plain_1x1(const ir::Node& n, DataType dt, int64_t& s) {
  return nhwc_conv1x1(n, dt, s) && !n.attrs.has(ops::conv::kShortcutAttr);
}

// The downsample conv: a Conv, or a FusedConv without activation and Z, at stride 1 or 2.
bool downsample(const ir::Node* d, DataType dt) {
  if (!d) return false;
  const bool conv = d->domain.empty() && d->op_type == "Conv" && (d->inputs.size() == 2 || d->inputs.size() == 3);
  const bool fused = d->domain == "com.microsoft" && d->op_type == "FusedConv" && d->inputs.size() >= 2 &&
                     d->inputs.size() <= 4 && !d->input(3) && d->attrs.get_string("activation", "").empty();
  int64_t s = 0;
  return (conv || fused) && plain_1x1(*d, dt, s) && (s == 1 || s == 2);
}

// The block's last conv: a FusedConv reading r as Z, at stride 1, with ReLU or no activation.
bool last_conv(const ir::Node& y, DataType& dt) {
  if (y.domain != "com.microsoft" || y.op_type != "FusedConv" || y.inputs.size() != 4 || !y.inputs[3]) return false;
  const ir::Value* h = y.input(0);
  if (!h || !half_dtype(h->dtype)) return false;
  dt = h->dtype;
  const std::string act = y.attrs.get_string("activation", "");
  int64_t s = 0;
  return (act.empty() || act == "Relu") && plain_1x1(y, dt, s) && s == 1 && y.inputs[3]->dtype == dt;
}

// Where kiln's kernel takes the pair and the fused GEMM is memory bound (the file comment).
bool kernel_takes(const ir::Node& y, const ir::Node& d) {
  const Dims& w3 = y.input(1)->initializer->dims();
  const Dims& wd = d.input(1)->initializer->dims();
  const int64_t m = w3[0], c1 = w3[3], c2 = wd[3];
  if (wd[0] != m || c1 % kChannelAlign != 0 || c2 % kChannelAlign != 0 || m % kOutputAlign != 0 ||
      m * (c1 + c2) > max_intensity() * (c1 + c2 + m))
    return false;
  // The kernel takes tensors under 2^31 elements (conv_shortcut::applies): checked where shapes are static.
  return nhwc_under_2g(y.input(0), c1) && nhwc_under_2g(y.input(0), m) && nhwc_under_2g(d.input(0), c2);
}

}  // namespace

Status fuse_conv_shortcut(ir::Graph& g, PassContext& ctx) {
  const BuilderConfig* cfg = ctx.config;
  if (!cfg || cfg->device() != DeviceType::kCUDA) return Status();
  Removals removed;
  for (auto& n : g.nodes()) {
    ir::Node* y = n.get();
    DataType dt = DataType::kUndefined;
    if (!last_conv(*y, dt)) continue;
    ir::Value* r = y->inputs[3];
    ir::Node* d = r->producer;
    if (!downsample(d, dt) || removed.has(d) || only_reader(g, r) != y) continue;
    if (y->inputs[0] == r || y->inputs[1] == r || y->inputs[2] == r || !kernel_takes(*y, *d)) continue;
    const int64_t s = d->attrs.get_ints("strides", {1, 1})[0];
    set_fused_names(*y, fused_names({d, y}));
    y->inputs = {y->inputs[0], y->inputs[1], y->inputs[2], nullptr, d->inputs[0], d->inputs[1]};
    if (d->input(2)) y->inputs.push_back(d->inputs[2]);
    y->attrs.set(ops::conv::kShortcutAttr, ir::Attribute::from_ints({s, s}));
    r->producer = nullptr;
    removed.drop(d);
  }
  if (const int fused = removed.finish(g)) ctx.stats["fused_conv_shortcut"] += fused;
  return Status();
}

}  // namespace kiln::passes

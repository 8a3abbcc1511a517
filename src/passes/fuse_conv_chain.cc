// A bottleneck block's last 1x1 conv and the next block's first, chained (CUDA engines, channels-last,
// after nhwc_layout and fuse_conv_shortcut):
//   y  = FusedConv[nhwc](h, W, b, z | "", x, Wd, bd; 1x1, stride 1, Relu or none)   (Z, a stride-1 shortcut or neither)
//   h2 = FusedConv[nhwc](y, W3, b3; 1x1, stride 1, Relu or none)                     (or a Conv)
// becomes
//   y, h2 = FusedConv[nhwc](h, W, b, z | "", x, Wd, bd, W3, b3; kiln.chain_activation = "Relu" | "")
// which kiln's chain kernel (ops/conv/conv_chain_cuda.h) runs with every weight resident in shared
// memory: h2 comes from the tile of y still on chip, so y is written once (the next block reads it
// as its residual) and not read back for h2 (ResNet-50 bs256 layer1: 411 MB at each block boundary).
// Fused only where that kernel takes the pair at every shape the engine allows: FP16/BF16, constant
// OHWI weights, statically known channel counts within its limits (below; ResNet-50's layer1 and its
// boundary to layer2), no groups, padding or dilation. y may have other readers and be a graph output;
// the next conv reads it as its X only.
#include <set>
#include <string>
#include <vector>

#include "ops/conv/conv_internal.h"
#include "ops/layout.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

// The chain kernel's limits (conv_chain::applies): C1, C2 and M2 in its 64-wide K and N tiles, M2
// 64 or 128, and either resident weights: y's M = 256 channels (two warp groups of 128) and W, Wd
// and W3, (C1 + C2 + M2) x 256 FP16/BF16 values (96 KB at the limit), in the 227 KB of shared
// memory a CTA gets beside its tiles (C2 is 0 without the shortcut); or streamed weights: M a
// multiple of 64 up to 1024 in chunks of 64, C1 at most 128, no shortcut.
constexpr int64_t kChainM = 256;
constexpr int64_t kChainAlign = 64;
constexpr int64_t kChainMaxM2 = 128;
constexpr int64_t kChainMaxResident = 192;  // C1 + C2 + M2
constexpr int64_t kStreamedMaxM = 1024, kStreamedMaxC1 = 128;

bool fused_conv(const ir::Node& n) { return n.domain == "com.microsoft" && n.op_type == "FusedConv"; }

// A channels-last 1x1 Conv or FusedConv at stride 1 without groups, padding or dilation, one output,
// no kiln.max_pool nor chain, ReLU or no activation, with a constant OHWI weight [M, 1, 1, C] of `dt`
// over an input of C statically known channels (and a bias of `dt`, if any).
bool chainable_1x1(const ir::Node& n, DataType dt) {
  if (!fused_conv(n) && !(n.domain.empty() && n.op_type == "Conv")) return false;
  if (n.attrs.has(ops::conv::kChainAttr)) return false;
  const std::string act = fused_conv(n) ? n.attrs.get_string("activation", "") : "";
  int64_t s = 0;
  return (act.empty() || act == "Relu") && nhwc_conv1x1(n, dt, s) && s == 1;
}

// The block's last conv: a chainable FusedConv with Z, a stride-1 shortcut (kiln.shortcut_strides
// [1, 1]: X2 over C2 statically known channels, W2 a constant OHWI [M, 1, 1, C2]) or neither; not
// both, which the kernel does not take. Its dtype in `dt`, C2 in `c2` (0 without the shortcut).
bool block_end(const ir::Node& p, DataType& dt, int64_t& c2) {
  const ir::Value* h = p.input(0);
  if (!fused_conv(p) || !h || !half_dtype(h->dtype)) return false;
  dt = h->dtype;
  if (!chainable_1x1(p, dt)) return false;
  const ir::Value* z = p.input(3);
  if (z && z->dtype != dt) return false;
  c2 = 0;
  if (!p.attrs.has(ops::conv::kShortcutAttr)) return p.inputs.size() <= 4;
  if (z || p.inputs.size() < 6 || p.inputs.size() > 7 || !ints_are(p, ops::conv::kShortcutAttr, {1, 1})) return false;
  // W2 [M, 1, 1, C2] over X2's channels, with W1's M outputs.
  int64_t c = 0;
  if (!conv1x1_operands(p.input(4), p.input(5), p.input(6), dt, c) || c < 1 ||
      p.input(5)->initializer->dim(0) != p.input(1)->initializer->dim(0))
    return false;
  c2 = c;
  return true;
}

// The next block's first conv: a chainable Conv, or FusedConv without Z or shortcut, reading y as its
// X and nowhere else.
bool block_start(const ir::Node& c, const ir::Value* y, DataType dt) {
  if (c.input(0) != y || !chainable_1x1(c, dt)) return false;
  if (c.attrs.has(ops::conv::kShortcutAttr) || c.inputs.size() > 4 || c.input(3)) return false;
  for (size_t i = 1; i < c.inputs.size(); ++i)
    if (c.inputs[i] == y) return false;
  return true;
}

// Where the chain kernel takes the pair (the limits above).
bool kernel_takes(const ir::Node& p, const ir::Node& c, int64_t c2) {
  const Dims& w = p.input(1)->initializer->dims();   // [M, 1, 1, C1]
  const Dims& w3 = c.input(1)->initializer->dims();  // [M2, 1, 1, M]
  const int64_t m = w[0], c1 = w[3], m2 = w3[0];
  if (w3[3] != m || c1 < kChainAlign || c1 % kChainAlign != 0 || c2 % kChainAlign != 0 || m2 < kChainAlign ||
      m2 > kChainMaxM2 || m2 % kChainAlign != 0)
    return false;
  const bool resident = m == kChainM && c1 + c2 + m2 <= kChainMaxResident;
  const bool streamed = m >= kChainM && m <= kStreamedMaxM && m % kChainAlign == 0 && c1 <= kStreamedMaxC1 && c2 == 0;
  if (!resident && !streamed) return false;
  const ir::Value* h = p.input(0);
  const ir::Value* y = p.outputs[0];
  return nhwc_under_2g(h, c1) && nhwc_under_2g(h, m) && nhwc_under_2g(y, m) && nhwc_under_2g(y, m2) &&
         nhwc_under_2g(c.outputs[0], m2) && (c2 == 0 || nhwc_under_2g(p.input(4), c2));
}

}  // namespace

Status fuse_conv_chain(ir::Graph& g, PassContext& ctx) {
  const BuilderConfig* cfg = ctx.config;
  if (!cfg || cfg->device() != DeviceType::kCUDA) return Status();
  Removals removed;
  for (auto& n : g.nodes()) {
    ir::Node* p = n.get();
    DataType dt = DataType::kUndefined;
    int64_t c2 = 0;
    if (removed.has(p) || !block_end(*p, dt, c2)) continue;
    ir::Value* y = p->outputs[0];
    ir::Node* c = nullptr;
    for (ir::Node* r : g.consumers(y))
      if (!removed.has(r) && block_start(*r, y, dt) && kernel_takes(*p, *r, c2)) {
        c = r;
        break;
      }
    if (!c) continue;
    const bool relu3 = fused_conv(*c) && c->attrs.get_string("activation", "") == "Relu";
    ir::Value* h2 = c->outputs[0];
    set_fused_names(*p, fused_names({p, c}));
    p->inputs.resize(9, nullptr);  // inputs 4-6 stay empty without the shortcut
    p->inputs[7] = c->inputs[1];
    p->inputs[8] = c->input(2);
    p->attrs.set(ops::conv::kChainAttr, ir::Attribute::from_string(relu3 ? "Relu" : ""));
    p->outputs.push_back(h2);
    h2->producer = p;
    removed.drop(c);
  }
  if (const int fused = removed.finish(g)) ctx.stats["fused_conv_chain"] += fused;
  return Status();
}

}  // namespace kiln::passes

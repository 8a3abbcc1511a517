// kiln's bottleneck chain (conv_chain_cuda.h): the node's checks, its tactics, and the two-step
// path that runs it on every GPU.
#include "ops/conv/conv_chain_cuda.h"

#include <string>
#include <vector>

#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/tactic_sink.h"
#include "ops/conv/conv_act.cuh"
#include "ops/conv/conv_graph_cuda.h"
#include "ops/conv/conv_internal.h"
#include "ops/conv/conv_shortcut_cuda.h"
#include "ops/layout.h"
#include "ops/matmul/matmul_internal.h"

namespace kiln::ops::conv_chain {

bool applies(const Problem& p) {
  constexpr int64_t kLimit = int64_t{1} << 31;
  if (p.pixels < 1 || p.c1 < 64 || p.c1 % 64 != 0 || p.c2 < 0 || p.c2 % 64 != 0 || (p.m2 != 64 && p.m2 != 128))
    return false;
  const bool resident = p.m == 256 && p.c1 + p.c2 + p.m2 <= 192 && !(p.c2 > 0 && p.has_z);
  const bool streamed = !resident && p.m >= 256 && p.m <= 1024 && p.m % 64 == 0 && p.c1 <= 128 && p.c2 == 0;
  return (resident || streamed) && p.pixels * p.m < kLimit && p.pixels * p.c1 < kLimit && p.pixels * p.c2 < kLimit;
}

namespace {

// The node's two convs one after the other: y by the conv + shortcut GEMM (its Hopper variant
// where it takes y) or a cuBLASLt GEMM with z in its epilogue, then h2 by a cuBLASLt GEMM.
Status run_two_steps(KernelContext& ctx, const Problem& p, const conv_shortcut::Problem* sp, DataType dt, const void* h,
                     const void* w1, const void* b1, const void* x, const void* w2, const void* b2, const void* z,
                     void* y, const void* w3, const void* b3, void* h2, bool relu, bool relu3) {
  using matmul::BiasActivation;
  if (sp) {
    const int v = conv_shortcut::hopper_takes(*sp) ? 2 : 0;
    KILN_RETURN_IF_ERROR(conv_shortcut::run(ctx, *sp, dt, h, w1, b1, x, w2, b2, y, relu, v));
  } else {
    KILN_RETURN_IF_ERROR(matmul::lt_gemm_nt(ctx, dt, p.pixels, p.m, p.c1, h, w1, b1, z, y,
                                            relu ? BiasActivation::kRelu : BiasActivation::kNone, 0));
  }
  return matmul::lt_gemm_nt(ctx, dt, p.pixels, p.m2, p.m, y, w3, b3, nullptr, h2,
                            relu3 ? BiasActivation::kRelu : BiasActivation::kNone, 0);
}

}  // namespace

Status run_fused_conv(KernelContext& ctx, const std::optional<std::array<int64_t, 2>>& shortcut, int act_kind,
                      bool relu3, const Tensor* b, const Tensor* z) {
  const auto act = static_cast<Act>(act_kind);
  const std::string what = std::string("FusedConv with ") + conv::kChainAttr;
  if (!is_nhwc(ctx.node()) || has_nchw_input(ctx.node()) || (act != Act::kRelu && act != Act::kNone) ||
      !ctx.has_input(7) || ctx.num_outputs() != 2 || (shortcut && (*shortcut)[0] * (*shortcut)[1] != 1) ||
      (shortcut && z))
    return ctx.error(what +
                         " runs on CUDA only channels-last, with W3 and two outputs, ReLU or no activation, and a "
                         "shortcut only at stride 1 and without Z (kiln's bottleneck chain)",
                     ErrorCode::kUnsupported);
  const Tensor& h = ctx.input(0);
  const Tensor& w1 = ctx.input(1);
  const Tensor* x = shortcut && ctx.has_input(4) ? &ctx.input(4) : nullptr;
  const Tensor* w2 = shortcut && ctx.has_input(5) ? &ctx.input(5) : nullptr;
  const Tensor* b2 = shortcut && ctx.has_input(6) && ctx.input(6).numel() > 0 ? &ctx.input(6) : nullptr;
  const Tensor& w3 = ctx.input(7);
  const Tensor* b3 = ctx.has_input(8) && ctx.input(8).numel() > 0 ? &ctx.input(8) : nullptr;
  const Tensor& y = ctx.output(0);
  const Tensor& h2 = ctx.output(1);
  const DataType dt = h.dtype();
  if (dt != DataType::kFloat16 && dt != DataType::kBFloat16)
    return ctx.error(what + " runs fp16 and bf16 only", ErrorCode::kUnsupported);
  if (shortcut && (!x || !w2)) return ctx.error(what + " and " + conv::kShortcutAttr + " needs X2 and W2");
  const Dims& hd = h.dims();
  if (hd.size() != 4 || w1.rank() != 4 || w3.rank() != 4 || (x && x->rank() != 4) || (w2 && w2->rank() != 4))
    return ctx.error(what + " needs 4-D X, W, W3 (and X2, W2)");
  const int64_t m = w1.dim(0), m2 = w3.dim(0);
  const int64_t c2 = x ? x->dim(3) : 0;
  const Dims want_y{hd[0], hd[1], hd[2], m}, want_h2{hd[0], hd[1], hd[2], m2};
  if (w1.dims() != Dims{m, 1, 1, hd[3]} || w3.dims() != Dims{m2, 1, 1, m} || (w2 && w2->dims() != Dims{m, 1, 1, c2}) ||
      (b && b->numel() != m) || (b2 && b2->numel() != m) || (b3 && b3->numel() != m2))
    return ctx.error(what + ": W " + dims_to_string(w1.dims()) + " and W3 " + dims_to_string(w3.dims()) +
                         " must be 1x1, W3 over W's output channels, biases of their output counts",
                     ErrorCode::kUnsupported);
  if (x && x->dims() != Dims{hd[0], hd[1], hd[2], c2})
    return ctx.error(what + ": X2 " + dims_to_string(x->dims()) + " must cover X's pixels " + dims_to_string(hd) +
                     " (a stride-1 shortcut)");
  if (y.dims() != want_y || h2.dims() != want_h2 || (z && z->dims() != want_y))
    return ctx.error(what + ": Y " + dims_to_string(y.dims()) + " and the chained output " + dims_to_string(h2.dims()) +
                     " must be " + dims_to_string(want_y) + " and " + dims_to_string(want_h2) +
                     (z ? ", Z " + dims_to_string(z->dims()) + " Y's" : ""));
  KILN_RETURN_IF_ERROR(conv::check_unit_conv(ctx, hd, w1.dims(), b, what));
  Problem p;
  p.pixels = hd[0] * hd[1] * hd[2], p.c1 = hd[3], p.c2 = c2, p.m = m, p.m2 = m2, p.has_z = z != nullptr;
  if (p.pixels == 0) return Status();
  conv_shortcut::Problem sp;
  if (shortcut) {
    sp.n = hd[0], sp.oh = hd[1], sp.ow = hd[2], sp.c1 = hd[3];
    sp.h2 = hd[1], sp.w2 = hd[2], sp.c2 = c2, sp.s = 1, sp.m = m;
  }
  for (const Tensor* t : {&h, &w1, x, w2, z, &w3, &y, &h2})
    if (t && !cuda::aligned(t->data(), 16))
      return ctx.error(what + ": a tensor is not 16-byte aligned", ErrorCode::kUnsupported);
  // The Hopper kernel where it takes the node, then the two steps; an engine naming none, or
  // naming the Hopper kernel where it does not take this shape or GPU, runs the two steps.
  static_assert(kVariants == cudnn_graph::kChainVariants, "one count of variants");
  const bool fused = hopper_takes(p);
  std::vector<int64_t> ids;
  if (fused) ids.push_back(cudnn_graph::kChainTactic + kFused);
  ids.push_back(cudnn_graph::kChainTactic + kTwoSteps);
  cuda::report_tactics(ids);
  const bool relu = act == Act::kRelu;
  const void* bp = b ? b->data() : nullptr;
  const void* b2p = b2 ? b2->data() : nullptr;
  const void* b3p = b3 ? b3->data() : nullptr;
  if (fused && ctx.attrs().get_int(kTacticAttr, -1) == cudnn_graph::kChainTactic + kFused) {
    const auto e = static_cast<cudaError_t>(launch_hopper(p, dt, h.data(), w1.data(), bp, x ? x->data() : nullptr,
                                                          w2 ? w2->data() : nullptr, b2p, z ? z->data() : nullptr,
                                                          ctx.output(0).data(), w3.data(), b3p, ctx.output(1).data(),
                                                          relu, relu3, cuda::stream_of(ctx)));
    if (e != cudaSuccess)
      return ctx.error(std::string("bottleneck chain (Hopper): ") + cudaGetErrorString(e), ErrorCode::kInternal);
    return Status();
  }
  return run_two_steps(ctx, p, shortcut ? &sp : nullptr, dt, h.data(), w1.data(), bp, x ? x->data() : nullptr,
                       w2 ? w2->data() : nullptr, b2p, z ? z->data() : nullptr, ctx.output(0).data(), w3.data(), b3p,
                       ctx.output(1).data(), relu, relu3);
}

}  // namespace kiln::ops::conv_chain

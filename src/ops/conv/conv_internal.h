// Shared by the conv family: validated concrete geometry and the kernels that
// conv.cc registers.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ops/common.h"
#include "ops/conv/window.h"

namespace kiln::ops::conv {

/// Concrete, validated geometry of one Conv / ConvInteger node on given inputs.
struct ConvShape {
  int64_t n = 0, c = 0, m = 0, group = 1;
  window::WindowAttrs attrs;
  window::Geometry geo;
  int64_t in_count = 1;   ///< input spatial volume
  int64_t out_count = 1;  ///< output spatial volume
  int64_t k_count = 1;    ///< kernel spatial volume
  Dims out_dims() const;  ///< [N, M, out...]
};

/// Validates X [N, C, D...], W [M, C/group, k...] and optional bias [M]; the
/// error message does not name the node (callers add it).
Result<ConvShape> conv_shape(const ir::Attributes& attrs, const Dims& x, const Dims& w, const Dims* bias);

/// Symbolic Conv / ConvInteger output for inference (`bias_input`: input 2 is a bias).
Status infer_conv_output(InferContext& ctx, DataType out_dtype, bool bias_input);

/// Concrete geometry of ConvTranspose: X [N, C, D...], W [C, M/group, k...].
struct ConvTransposeShape {
  int64_t n = 0, c = 0, m = 0, group = 1;
  window::WindowAttrs attrs;
  Dims in, out;  ///< spatial sizes
  std::vector<int64_t> pad_begin;
  int64_t in_count = 1, out_count = 1, k_count = 1;
  Dims out_dims() const;
};
Result<ConvTransposeShape> conv_transpose_shape(const ir::Attributes& attrs, const Dims& x, const Dims& w,
                                                const Dims* bias);

Status infer_conv(InferContext& ctx);
Status ref_conv(KernelContext& ctx);
Status infer_conv_transpose(InferContext& ctx);
Status ref_conv_transpose(KernelContext& ctx);
Status infer_conv_integer(InferContext& ctx);
Status ref_conv_integer(KernelContext& ctx);

/// FusedConv (com.microsoft): act(Conv(X, W, B) + Z); fused_conv.cc.
void register_fused_conv(OpRegistry& r);

/// FusedConv's kiln extension: a 2-D max pool after the activation (passes/fuse_conv_maxpool.cc),
/// ints [kh, kw, sh, sw, pad_top, pad_left, pad_bottom, pad_right]; dilation 1, floor, NaNs
/// skipped as MaxPool does. Y is the pool's output.
inline constexpr const char* kMaxPoolAttr = "kiln.max_pool";
struct FusedMaxPool {
  int64_t kh = 0, kw = 0, sh = 1, sw = 1, pt = 0, pl = 0, pb = 0, pr = 0;
  int64_t out_h(int64_t h) const { return (h + pt + pb - kh) / sh + 1; }
  int64_t out_w(int64_t w) const { return (w + pl + pr - kw) / sw + 1; }
};
/// The node's fused max pool: nullopt when absent, an error naming what is wrong.
Result<std::optional<FusedMaxPool>> fused_max_pool(const ir::Attributes& attrs);

/// FusedConv's kiln extension: a 1x1 shortcut conv added in the epilogue (passes/fuse_conv_shortcut.cc),
/// ints [sh, sw], its strides. With it the node has inputs 4 = X2 [N, C2, H2, W2], 5 = W2 [M, C2, 1, 1]
/// and 6 = B2 [M] (optional), and Y = act(Conv(X, W, B) + Z + Conv(X2, W2, B2; 1x1, strides [sh, sw],
/// no pads)): ResNet's downsample never written. Not with kMaxPoolAttr.
inline constexpr const char* kShortcutAttr = "kiln.shortcut_strides";
/// The node's shortcut strides [sh, sw]: nullopt when absent, an error when not 2 ints >= 1.
Result<std::optional<std::array<int64_t, 2>>> fused_shortcut(const ir::Attributes& attrs);

/// FusedConv's kiln extension: the next 1x1 conv chained on Y (passes/fuse_conv_chain.cc), a string,
/// that conv's activation: "Relu" or "" (none); its presence marks the chain. With it the node has
/// inputs 7 = W3 [M2, M, 1, 1] and 8 = B3 [M2] (optional; inputs 4-6 absent without kShortcutAttr) and
/// a second output H2 = act3(Conv(Y, W3, B3; 1x1, stride 1, no pads)) of the finished Y (after its
/// bias, Z, shortcut and activation): a ResNet block's output and the next block's first conv of it,
/// Y never read back. Not with kMaxPoolAttr.
inline constexpr const char* kChainAttr = "kiln.chain_activation";
/// The chained conv's activation: nullopt without kChainAttr, true for Relu, false for none, an
/// error (kInvalidModel) for any other value.
Result<std::optional<bool>> fused_chain(const ir::Attributes& attrs);

/// For kiln's channels-last 1x1 GEMM kernels (the conv + shortcut GEMM, the bottleneck chain): OK
/// when the node's conv of NHWC X dims `x` by OHWI W dims `w` (bias `b`, if any) is at stride 1
/// without padding or groups; else an error (kUnsupported where it is not) naming `what`.
Status check_unit_conv(const KernelContext& ctx, const Dims& x, const Dims& w, const Tensor* b,
                       const std::string& what);

Status cpu_im2col_gemm(KernelContext& ctx);
bool applies_im2col_gemm(const ir::Node& node, const std::vector<TensorType>& inputs);
Status cpu_gemm_col2im(KernelContext& ctx);
bool applies_gemm_col2im(const ir::Node& node, const std::vector<TensorType>& inputs);

#ifdef KILN_HAVE_DNNL
Status onednn_conv(KernelContext& ctx);
bool applies_onednn_conv(const ir::Node& node, const std::vector<TensorType>& inputs);
#endif

}  // namespace kiln::ops::conv

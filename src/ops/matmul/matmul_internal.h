// Shared by the matmul family: numpy-style matmul geometry (1-D operands, batch
// broadcast) and the kernels the registration file wires up.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ops/common.h"

namespace kiln::ops::matmul {

/// Concrete geometry of op(A) @ op(B) with numpy batch broadcasting.
struct MatMulDims {
  int64_t m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;  ///< A stored k x m / B stored n x k per matrix
  Dims out;                               ///< output dims (1-D operands' unit dims dropped)
  std::vector<int64_t> a_offsets;         ///< per output batch: element offset of A's matrix
  std::vector<int64_t> b_offsets;         ///< per output batch: element offset of B's matrix
  int64_t batch() const { return static_cast<int64_t>(a_offsets.size()); }
  /// True when B is one matrix shared by every batch and A's matrices are
  /// contiguous and untransposed, so the batch folds into M.
  bool folds_into_m() const;
};

/// Computes the geometry; the error message says which dims disagree.
Result<MatMulDims> matmul_dims(const Dims& a, const Dims& b, bool trans_a, bool trans_b);

/// Symbolic output shape for inference (rank unknown -> nullopt).
Result<std::optional<Shape>> matmul_shape(const InferContext& ctx, const Shape* a, const Shape* b, bool trans_a,
                                          bool trans_b);

/// Float32 C[batch] = alpha * op(A) @ op(B) with kiln's own GEMM, spread over threads.
void matmul_f32_gemm(const MatMulDims& g, float alpha, const float* a, const float* b, float* c, int threads);

// Kernels (defined in matmul.cc, gemm.cc, matmul_cpu.cc, matmul_onednn.cc).
Status infer_matmul(InferContext& ctx);

/// MatMulBias's `activation` attribute: "" (none), "Relu", or "GeluTanh"
/// (0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), cuBLASLt's GELU epilogue).
enum class BiasActivation { kNone = 0, kRelu = 1, kGeluTanh = 2 };
/// The node's activation, or an error naming an unknown one.
Result<BiasActivation> bias_activation(const ir::Attributes& attrs);
/// MatMulBias's optional fourth input, checked against the output `y` (same dims and dtype,
/// no activation beside it): null when absent, else the tensor, else an error naming both.
Result<const Tensor*> residual_input(KernelContext& ctx, const Tensor& y, BiasActivation act);
/// CUDA: row-major D[m, n] = act(X[m, k] W[n, k]^T + C[m, n] + bias[n]) as one cuBLASLt call
/// (C as beta = 1, the bias and the activation as the epilogue; C and bias may be null), through
/// the matmul kernels' plans: the heuristic's rank-th configuration (its first where it has fewer;
/// the node's kiln.tactic names another kernel's candidate). The channels-last 1x1 convs' GEMM
/// tactics (conv_cuda.cu).
Status lt_gemm_nt(KernelContext& ctx, DataType dtype, int64_t m, int64_t n, int64_t k, const void* x, const void* w,
                  const void* bias, const void* c, void* d, BiasActivation act, int rank = 0);
Status ref_matmul(KernelContext& ctx);
Status infer_fused_matmul(InferContext& ctx);
Status ref_fused_matmul(KernelContext& ctx);
Status infer_matmul_integer(InferContext& ctx);
Status ref_matmul_integer(KernelContext& ctx);
Status infer_gemm(InferContext& ctx);
/// MatMulBias (domain kiln): MatMul + a bias along the last axis; matmul_bias.cc.
void register_matmul_bias(OpRegistry& r);
Status ref_gemm(KernelContext& ctx);

Status cpu_gemm_matmul(KernelContext& ctx);
Status cpu_gemm_fused_matmul(KernelContext& ctx);
Status cpu_gemm_gemm(KernelContext& ctx);
/// Gemm fast paths: writes C broadcast to [M, N] into y (beta != 0), else sets beta to 0.
Status prefill_gemm_c(KernelContext& ctx, int64_t m, int64_t n, float* y, float& beta);
bool applies_f32(const ir::Node& node, const std::vector<TensorType>& inputs);

#ifdef KILN_HAVE_DNNL
Status onednn_matmul(KernelContext& ctx);
Status onednn_gemm(KernelContext& ctx);
#endif

}  // namespace kiln::ops::matmul

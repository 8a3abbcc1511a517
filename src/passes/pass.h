// Graph passes. Each pass is one small file; pipeline.cc holds the one ordered list.
#pragma once

#include <algorithm>
#include <map>
#include <string>

#include "builder/build_progress.h"
#include "ir/graph.h"
#include "kiln/builder.h"
#include "kiln/logger.h"

namespace kiln::passes {

/// What passes may read and report.
struct PassContext {
  const BuilderConfig* config = nullptr;
  Logger* logger = nullptr;
  /// Shapes of inputs used for inference: the declared shapes, where a dynamic dim
  /// that every optimization profile pins to one value (min = max) is that value.
  /// Dims that vary between min and max stay symbolic.
  std::map<std::string, Shape> input_shapes;
  /// Counters a pass bumps ("folded_constants", ...), shown by --verbose.
  std::map<std::string, int> stats;
  /// The builder's kPhasePasses phase: run_pipeline reports one step per pass (may be null).
  BuildPhase* progress = nullptr;
  void log(Logger::Severity s, const std::string& m) const {
    if (logger) logger->emit(s, m);
  }
};

using PassFn = Status (*)(ir::Graph&, PassContext&);

struct Pass {
  const char* name;
  PassFn fn;
};

Status infer_shapes(ir::Graph& g, PassContext& ctx);
/// Reshape targets computed at run time -> constants (0 / -1 for symbolic dims) where inference knows them.
Status fold_shape_targets(ir::Graph& g, PassContext& ctx);
Status fold_constants(ir::Graph& g, PassContext& ctx);
Status eliminate_identity(ir::Graph& g, PassContext& ctx);
Status eliminate_common_subexpressions(ir::Graph& g, PassContext& ctx);
Status eliminate_dead_nodes(ir::Graph& g, PassContext& ctx);
Status fold_conv_batchnorm(ir::Graph& g, PassContext& ctx);
/// Concat inputs that are adjacent Slices covering one tensor along its axis -> that tensor.
Status merge_concat_slices(ir::Graph& g, PassContext& ctx);
/// Row-wise ops whose output only a Gather/Slice of some rows reads -> computed on those rows (ViT class token).
Status narrow_rows(ir::Graph& g, PassContext& ctx);
/// Conv with kernel == stride (non-overlapping patches, CUDA engines) -> Reshape/Transpose + MatMul(Bias).
Status patchify_conv(ir::Graph& g, PassContext& ctx);
/// Stride-2 conv over <= 4 channels with a 5x5+ kernel (FP16/BF16 CUDA engines, batch >= 8) ->
/// Pad + space-to-depth Transpose + stride-1 conv over 16 channels (space_to_depth_stem.cc).
Status space_to_depth_stem(ir::Graph& g, PassContext& ctx);
Status reduce_precision(ir::Graph& g, PassContext& ctx);
Status fuse_conv_activation(ir::Graph& g, PassContext& ctx);
/// Erf / tanh GELU subgraphs (as PyTorch exports them) -> one Gelu (opset 20).
Status fuse_gelu(ir::Graph& g, PassContext& ctx);
/// Add -> last-axis LayerNormalization -> com.microsoft SkipLayerNormalization.
Status fuse_skip_layernorm(ir::Graph& g, PassContext& ctx);
/// Gather(table, ids) -> SkipLayerNormalization -> kiln GatherSkipLayerNormalization (CUDA; BERT's embeddings).
Status fuse_gather_layernorm(ir::Graph& g, PassContext& ctx);
/// Concat(head, rest, axis 1) -> SkipLayerNormalization -> kiln ConcatSkipLayerNormalization (CUDA; ViT's class token).
Status fuse_concat_layernorm(ir::Graph& g, PassContext& ctx);
Status fuse_matmul_bias(ir::Graph& g, PassContext& ctx);
/// MatMul -> scale -> mask -> Softmax -> MatMul (+ head split/merge views) -> kiln FusedAttention (CUDA).
Status fuse_attention(ir::Graph& g, PassContext& ctx);
/// ONNX Attention (no cache, no causal/softcap, float mask) -> kiln FusedAttention on CUDA.
Status lower_attention(ir::Graph& g, PassContext& ctx);
/// A FusedAttention mask that is an elementwise chain over a broadcast (Expand, And with
/// all-true) reads the chain computed before the broadcast (shrink_attention_masks.cc).
Status shrink_attention_masks(ir::Graph& g, PassContext& ctx);
/// Where over Cast(m, to = bool) (through views) -> kiln WhereNonzero reading m (CUDA; attention masks).
Status fuse_where_cast(ir::Graph& g, PassContext& ctx);
/// Transpose/Reshape/Squeeze pairs that undo or repeat each other collapse; a Transpose
/// moving only size-1 dims becomes a Reshape.
Status cancel_transposes(ir::Graph& g, PassContext& ctx);
/// A Transpose keeping the last axis moves through row-wise ops (MatMul, bias, unary) to a
/// Transpose it composes with or into a FusedAttention view.
Status sink_transposes(ir::Graph& g, PassContext& ctx);
/// The Q, K and V projections of a FusedAttention (same input, constant weights) -> one GEMM read through Slice views.
Status merge_qkv(ir::Graph& g, PassContext& ctx);
/// Decomposed last-axis LayerNorm (ReduceMean, Sub, Pow, ..., Sqrt, Div) -> LayerNormalization.
Status fuse_layernorm(ir::Graph& g, PassContext& ctx);
/// Decomposed last-axis RMSNorm (Pow, ReduceMean, Add, Sqrt, Reciprocal, Mul) -> RMSNormalization (opset 23).
Status fuse_rmsnorm(ir::Graph& g, PassContext& ctx);
/// x * Sigmoid(x) -> Swish (opset 24); x * HardSigmoid(x, 1/6, 1/2) -> HardSwish.
Status fuse_silu(ir::Graph& g, PassContext& ctx);
/// MatMulBias -> Relu / GELU -> MatMulBias(activation) (cuBLASLt epilogue; erf GELU only in FP16/BF16 CUDA engines).
Status fuse_matmul_activation(ir::Graph& g, PassContext& ctx);
/// MatMulBias -> Add / SkipLayerNormalization of a same-shape residual -> MatMulBias(residual)
/// (cuBLASLt's C) [-> LayerNormalization].
Status fuse_matmul_residual(ir::Graph& g, PassContext& ctx);
/// FP32 CUDA engines with TF32: a small-weight GEMM writing a graph output (a classifier head) -> kiln.exact_fp32.
Status exact_output_gemm(ir::Graph& g, PassContext& ctx);
/// Connected elementwise/broadcast chains (>= 2 nodes, one output) -> kiln FusedElementwise (CUDA engines).
Status fuse_elementwise(ir::Graph& g, PassContext& ctx);
Status nhwc_layout(ir::Graph& g, PassContext& ctx);
/// ResNet's stem max pool into the channels-last stem conv (fuse_conv_maxpool.cc; CUDA engines).
Status fuse_conv_maxpool(ir::Graph& g, PassContext& ctx);
/// A bottleneck block's 1x1 projection shortcut into its last channels-last 1x1 FusedConv
/// (kiln.shortcut_strides; fuse_conv_shortcut.cc; FP16/BF16 CUDA engines).
Status fuse_conv_shortcut(ir::Graph& g, PassContext& ctx);
/// A block's last channels-last 1x1 FusedConv and the next block's first 1x1 conv reading its output
/// -> one FusedConv with a second output (kiln.chain_activation; fuse_conv_chain.cc; FP16/BF16 CUDA engines).
Status fuse_conv_chain(ir::Graph& g, PassContext& ctx);

/// Number of passes run_pipeline runs (the steps of its progress phase).
int pipeline_size();

/// Runs the pipeline in order; on failure the message names the pass.
Status run_pipeline(ir::Graph& g, PassContext& ctx);

}  // namespace kiln::passes

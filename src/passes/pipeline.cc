// The one ordered list of passes.
#include <cstdlib>
#include <string>
#include <string_view>

#include "passes/pass.h"

namespace kiln::passes {

namespace {
const Pass kPipeline[] = {
    {"infer_shapes", infer_shapes},
    {"fold_shape_targets", fold_shape_targets},  // dynamic dims: runtime-computed Reshape targets -> constants
    {"eliminate_identity", eliminate_identity},
    {"fold_constants", fold_constants},
    {"eliminate_identity", eliminate_identity},  // again: Gathers whose indices folded into 0..n-1
    {"eliminate_common_subexpressions", eliminate_common_subexpressions},  // constants are initializers now
    {"cancel_transposes", cancel_transposes},
    {"fold_conv_batchnorm", fold_conv_batchnorm},
    {"patchify_conv", patchify_conv},              // CUDA engines; conv bias folded, before fuse_conv_activation
    {"space_to_depth_stem", space_to_depth_stem},  // FP16/BF16 CUDA engines; likewise
    {"merge_concat_slices", merge_concat_slices},  // constant slice bounds; the Slices it frees die next
    {"eliminate_dead_nodes", eliminate_dead_nodes},
    {"narrow_rows", narrow_rows},  // before the fusions, which then see the narrowed ops
    {"fuse_layernorm", fuse_layernorm},
    {"fuse_rmsnorm", fuse_rmsnorm},
    {"fuse_conv_activation", fuse_conv_activation},
    {"fuse_silu", fuse_silu},  // after fuse_conv_activation, which takes Conv -> SiLU
    {"fuse_matmul_bias", fuse_matmul_bias},
    {"fuse_gelu", fuse_gelu},
    {"fuse_matmul_activation", fuse_matmul_activation},  // after fuse_gelu made the Gelus it takes
    {"fuse_skip_layernorm", fuse_skip_layernorm},
    {"fuse_gather_layernorm", fuse_gather_layernorm},    // CUDA engines only
    {"fuse_concat_layernorm", fuse_concat_layernorm},    // CUDA engines only
    {"cancel_transposes", cancel_transposes},            // again: fusions can leave layout pairs behind
    {"fuse_attention", fuse_attention},                  // CUDA engines only
    {"lower_attention", lower_attention},                // CUDA engines only: ONNX Attention -> FusedAttention
    {"shrink_attention_masks", shrink_attention_masks},  // masks read before their broadcast
    {"fuse_where_cast", fuse_where_cast},                // CUDA engines; after the masks are shrunk
    {"sink_transposes", sink_transposes},                // after the attention views exist, which take its permutations
    {"cancel_transposes", cancel_transposes},            // composes the pairs sink_transposes brought together
    {"merge_qkv", merge_qkv},                            // CUDA engines: one GEMM for an attention's Q, K and V
    {"fuse_matmul_residual", fuse_matmul_residual},      // after the passes that rewrite plain MatMulBias
    {"exact_output_gemm", exact_output_gemm},            // FP32 CUDA engines with TF32: the output head without TF32
    {"fuse_elementwise", fuse_elementwise},              // CUDA engines only; before reduce_precision, which halves it
    {"reduce_precision", reduce_precision},              // CUDA engines with --fp16/--bf16 only
    {"nhwc_layout", nhwc_layout},                        // CUDA engines with --fp16/--bf16 only
    {"cancel_transposes", cancel_transposes},            // the layout's edge Transposes against the graph's own
    {"fuse_conv_maxpool", fuse_conv_maxpool},            // CUDA engines: channels-last stem conv and pool
    {"fuse_conv_shortcut", fuse_conv_shortcut},          // CUDA engines: a block's 1x1 conv and its downsample
    {"fuse_conv_chain", fuse_conv_chain},                // CUDA engines: a block's last 1x1 conv and the next's first
    {"infer_shapes", infer_shapes},                      // final types for the plan and for inspect
};

// KILN_DISABLE_PASSES=name,name skips optional passes (to measure what one buys,
// or to work around one); the shape passes always run.
bool disabled(const char* name) {
  const char* env = std::getenv("KILN_DISABLE_PASSES");
  if (!env || std::string_view(name) == "infer_shapes") return false;
  std::string list = std::string(",") + env + ",";
  return list.find(std::string(",") + name + ",") != std::string::npos;
}

}  // namespace

Status run_pipeline(ir::Graph& g, PassContext& ctx) {
  for (const Pass& p : kPipeline) {
    size_t before = g.nodes().size();
    if (disabled(p.name)) {
      ctx.log(Logger::Severity::kInfo, std::string("pass ") + p.name + " disabled by KILN_DISABLE_PASSES");
      if (ctx.progress) KILN_RETURN_IF_ERROR(ctx.progress->step());
      continue;
    }
    Status s = p.fn(g, ctx);
    if (!s.ok()) return s;
    KILN_RETURN_IF_ERROR(ir::verify(g).with_context(std::string("after pass ") + p.name));
    ctx.log(Logger::Severity::kVerbose, std::string("pass ") + p.name + ": " + std::to_string(before) + " -> " +
                                            std::to_string(g.nodes().size()) + " nodes");
    if (ctx.progress) KILN_RETURN_IF_ERROR(ctx.progress->step());
  }
  return Status();
}

int pipeline_size() { return static_cast<int>(std::size(kPipeline)); }

}  // namespace kiln::passes

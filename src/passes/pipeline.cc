// The one ordered list of passes.
#include "passes/pass.h"

namespace kiln::passes {

namespace {
const Pass kPipeline[] = {
    {"infer_shapes", infer_shapes},
    {"eliminate_identity", eliminate_identity},
    {"fold_constants", fold_constants},
    {"cancel_transposes", cancel_transposes},
    {"fold_conv_batchnorm", fold_conv_batchnorm},
    {"eliminate_dead_nodes", eliminate_dead_nodes},
    {"fuse_layernorm", fuse_layernorm},
    {"fuse_rmsnorm", fuse_rmsnorm},
    {"fuse_conv_activation", fuse_conv_activation},
    {"fuse_silu", fuse_silu},  // after fuse_conv_activation, which takes Conv -> SiLU
    {"fuse_matmul_bias", fuse_matmul_bias},
    {"fuse_gelu", fuse_gelu},
    {"fuse_skip_layernorm", fuse_skip_layernorm},
    {"cancel_transposes", cancel_transposes},  // again: fusions can leave layout pairs behind
    {"fuse_attention", fuse_attention},      // CUDA engines only
    {"reduce_precision", reduce_precision},    // CUDA engines with --fp16/--bf16 only
    {"nhwc_layout", nhwc_layout},              // CUDA engines with --fp16/--bf16 only
    {"infer_shapes", infer_shapes},            // final types for the plan and for inspect
};
}  // namespace

Status run_pipeline(ir::Graph& g, PassContext& ctx) {
  for (const Pass& p : kPipeline) {
    size_t before = g.nodes().size();
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

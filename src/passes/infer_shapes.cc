// Symbolic shape inference: every value gets a dtype and (maybe symbolic) shape.
//   x:[batch,3,224,224] -> Conv -> y:[?]   becomes   y:[batch,64,112,112]
#include "passes/pass.h"
#include "runtime/shape_eval.h"

namespace kiln::passes {

Status infer_shapes(ir::Graph& g, PassContext& ctx) {
  Propagation p;
  KILN_RETURN_IF_ERROR(propagate(g, ctx.input_shapes, p, /*strict=*/true));
  for (auto& node : g.nodes())
    for (ir::Value* o : node->outputs) {
      if (!o) continue;
      auto it = p.types.find(o);
      if (it == p.types.end()) continue;
      o->dtype = it->second.dtype;
      // Keep the declared shape's symbols: inference at the profile's opt dims
      // gives concrete numbers, which would be wrong for other dims.
      o->shape = it->second.shape;
    }
  return Status();
}

}  // namespace kiln::passes

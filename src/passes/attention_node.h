// Building a kiln FusedAttention node (src/ops/attention/fused_attention.h), shared by
// fuse_attention (exported attention subgraphs) and lower_attention (ONNX Attention).
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"

namespace kiln::passes {

struct FusedAttentionSpec {
  std::vector<ir::Value*> inputs;  ///< Q, K, V, mask (or null), then the views' shape inputs
  double scale = 1.0;
  std::vector<int64_t> q_view, k_view, v_view, o_view;
  std::vector<int64_t> scale_inputs;  ///< (slot, divide) pairs; empty: none
  bool zero_masked_rows = false;
};

/// Adds the node writing `out` (which it now produces) and returns it.
inline ir::Node* add_fused_attention(ir::Graph& g, const FusedAttentionSpec& s, ir::Value* out, const std::string& name) {
  ir::Node* f = g.add_node("FusedAttention", s.inputs, {out}, g.unique_name(name));
  f->domain = "kiln";
  f->opset = 1;
  f->attrs.set("scale", ir::Attribute::from_float(static_cast<float>(s.scale)));
  f->attrs.set("q_view", ir::Attribute::from_ints(s.q_view));
  f->attrs.set("k_view", ir::Attribute::from_ints(s.k_view));
  f->attrs.set("v_view", ir::Attribute::from_ints(s.v_view));
  f->attrs.set("o_view", ir::Attribute::from_ints(s.o_view));
  if (!s.scale_inputs.empty()) f->attrs.set("scale_inputs", ir::Attribute::from_ints(s.scale_inputs));
  f->attrs.set("zero_masked_rows", ir::Attribute::from_int(s.zero_masked_rows ? 1 : 0));
  out->producer = f;
  g.opset_imports.emplace("kiln", 1);
  return f;
}

}  // namespace kiln::passes

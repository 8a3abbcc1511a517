// Identity elimination: Identity and inference-mode Dropout forward their input.
//   x -> Identity -> y -> Relu    becomes    x -> Relu
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

Status eliminate_identity(ir::Graph& g, PassContext& ctx) {
  std::vector<const ir::Node*> removed;
  const std::set<std::string> captured = captured_names(g);  // read by bodies by name
  for (auto& node : g.nodes()) {
    bool identity = node->op_type == "Identity" && node->domain.empty();
    // Dropout in inference: output 0 is the input; only when the mask is unused.
    bool dropout = node->op_type == "Dropout" && node->domain.empty() &&
                   (node->outputs.size() < 2 || !node->outputs[1] || g.consumers(node->outputs[1]).empty()) &&
                   !(node->outputs.size() > 1 && node->outputs[1] && g.is_output(node->outputs[1]));
    if (!identity && !dropout) continue;
    if (node->inputs.empty() || !node->inputs[0] || node->outputs.empty() || !node->outputs[0]) continue;
    ir::Value* in = node->inputs[0];
    ir::Value* out = node->outputs[0];
    // A graph output keeps its name, and so does a value a subgraph body reads by
    // name: only drop the node when the output is internal.
    if (g.is_output(out) || captured.count(out->name)) continue;
    g.replace_uses(out, in);
    removed.push_back(node.get());
  }
  g.remove_nodes_if([&](const ir::Node& n) { return std::find(removed.begin(), removed.end(), &n) != removed.end(); });
  g.prune_values();
  ctx.stats["removed_identity"] += static_cast<int>(removed.size());
  return Status();
}

}  // namespace kiln::passes

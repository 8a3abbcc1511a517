// Dead-node elimination: nodes none of whose outputs reach a graph output are removed.
//   x -> A -> out,  x -> B -> (unused)    becomes    x -> A -> out
#include <unordered_set>

#include "passes/pass.h"

namespace kiln::passes {

Status eliminate_dead_nodes(ir::Graph& g, PassContext& ctx) {
  std::unordered_set<const ir::Value*> live(g.outputs.begin(), g.outputs.end());
  std::unordered_set<std::string> live_names;
  std::unordered_set<const ir::Node*> keep;
  for (auto it = g.nodes().rbegin(); it != g.nodes().rend(); ++it) {
    const ir::Node& n = **it;
    bool needed = false;
    for (ir::Value* o : n.outputs)
      if (o && (live.count(o) || live_names.count(o->name))) needed = true;
    if (!needed) continue;
    keep.insert(&n);
    for (ir::Value* in : n.inputs)
      if (in) live.insert(in);
    for (auto& [k, a] : n.attrs.all()) {
      if (a.g)
        for (auto& s : a.g->outer_references()) live_names.insert(s);
      for (auto& sg : a.graphs)
        for (auto& s : sg->outer_references()) live_names.insert(s);
    }
  }
  size_t before = g.nodes().size();
  g.remove_nodes_if([&](const ir::Node& n) { return !keep.count(&n); });
  g.prune_values();
  ctx.stats["removed_dead"] += static_cast<int>(before - g.nodes().size());
  return Status();
}

}  // namespace kiln::passes

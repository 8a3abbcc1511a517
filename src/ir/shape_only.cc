#include "ir/shape_only.h"

#include <string>
#include <unordered_map>
#include <vector>

namespace kiln::ir {

bool reads_type_only(const Node* n) { return n->domain.empty() && (n->op_type == "Shape" || n->op_type == "Size"); }

std::unordered_set<const Node*> shape_only_nodes(const Graph& g) {
  std::unordered_map<const Value*, std::vector<const Node*>> readers;
  std::unordered_set<std::string> captured;  // read by name from subgraphs
  for (auto& n : g.nodes()) {
    for (const Value* in : n->inputs)
      if (in) readers[in].push_back(n.get());
    for (auto& s : subgraph_captures(*n)) captured.insert(s);
  }
  std::unordered_set<const Node*> only;
  const auto& nodes = g.nodes();
  for (size_t i = nodes.size(); i-- > 0;) {
    const Node* n = nodes[i].get();
    if (reads_type_only(n) || n->outputs.empty()) continue;
    bool data_needed = false;
    for (const Value* o : n->outputs) {
      if (!o) continue;
      if (g.is_output(o) || captured.count(o->name)) data_needed = true;
      auto r = readers.find(o);
      if (r != readers.end())
        for (const Node* c : r->second)
          if (!reads_type_only(c) && !only.count(c)) data_needed = true;
    }
    if (!data_needed) only.insert(n);
  }
  return only;
}

}  // namespace kiln::ir

// What a NetworkDefinition holds: the IR graph plus handles given to users.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/network.h"

namespace kiln {

struct NetworkDefinition::Impl {
  ir::Graph graph;
  std::vector<std::unique_ptr<NetworkTensor>> tensors;  // handles (by value name)
  std::vector<std::unique_ptr<Layer>> layers;
  std::vector<std::string> errors;  // API misuse, reported by the builder
};

/// The IR graph behind a network (for the parser and the builder).
inline ir::Graph& network_graph(NetworkDefinition& n) { return n.impl().graph; }

}  // namespace kiln

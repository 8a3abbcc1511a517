// Nodes whose results are read only for their shapes. A Shape/Size node needs its
// input's type, not its data; fusions leave such producers behind (the attention
// fusion keeps the head-split Transpose that a Shape node reads). The CUDA executor
// does not run these nodes, and the memory planner gives their outputs no memory.
#pragma once

#include <unordered_set>

#include "ir/graph.h"

namespace kiln::ir {

/// Shape and Size: nodes that read their input's type, not its data.
bool reads_type_only(const Node* n);

/// Nodes none of whose outputs is a graph output or read as data: every reader
/// is a Shape/Size node or another such node. Shape/Size nodes themselves are not
/// included (their values are computed from types).
std::unordered_set<const Node*> shape_only_nodes(const Graph& g);

}  // namespace kiln::ir

// Type propagation with evaluation of small shape-computing subgraphs.
//
// Walks a graph in order, inferring each value's dtype and shape. Values that
// are known (initializers, the output of Shape on a concrete shape, and any
// small node whose inputs are all known) are computed, so shape arithmetic
// such as Shape -> Gather -> Concat -> Reshape resolves to concrete dims.
#pragma once

#include <map>
#include <string>
#include <unordered_map>

#include "ir/graph.h"
#include "ops/op.h"

namespace kiln {

struct Propagation {
  std::unordered_map<const ir::Value*, ops::TensorType> types;
  std::unordered_map<const ir::Value*, Tensor> values;
};

/// Largest node (in input elements) evaluated during propagation.
inline constexpr int64_t kEvalElementLimit = 4096;

/// Propagates from the given input shapes (missing inputs use their declared shape).
/// With `strict`, an inference error aborts; otherwise the failing node's outputs stay unknown.
/// `input_values`, if given, are known values of some inputs (shape tensors fed by the caller).
Status propagate(const ir::Graph& g, const std::map<std::string, Shape>& input_shapes, Propagation& out,
                 bool strict = true, const std::map<std::string, Tensor>* input_values = nullptr);

}  // namespace kiln

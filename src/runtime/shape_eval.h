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
#include <vector>

#include "ir/graph.h"
#include "ops/op.h"

namespace kiln {

/// An element of a small integer tensor known element by element (SymVec).
struct SymEntry {
  bool literal = true;  ///< `value` holds the element (any integer, -1 included)
  int64_t value = 0;
  Dim dim;  ///< when not literal: a symbolic (or unknown) dim, >= 0 at run time
  Dim as_dim() const { return literal ? (value >= 0 ? Dim(value) : Dim::unknown()) : dim; }
};

/// A small integer tensor (a scalar or 1-D) whose elements may be symbolic dims: the Shape of a
/// tensor with dims like `batch`, and what exporters' shape arithmetic makes of it (Gather,
/// Slice, Concat, Unsqueeze, Squeeze, Cast, Mul, Div, Equal, Where). A Reshape, Expand or
/// ConstantOfShape whose shape input is one gets symbolic output dims instead of unknown ones.
struct SymVec {
  std::vector<SymEntry> e;
  bool scalar = false;
};

struct Propagation {
  std::unordered_map<const ir::Value*, ops::TensorType> types;
  std::unordered_map<const ir::Value*, Tensor> values;
  /// Shape values known only symbolically (element by element; numbers are in `values`).
  std::unordered_map<const ir::Value*, SymVec> sym;
};

/// Largest node (in input elements) evaluated during propagation.
inline constexpr int64_t kEvalElementLimit = 4096;

/// Propagates from the given input shapes (missing inputs use their declared shape).
/// With `strict`, an inference error aborts; otherwise the failing node's outputs stay unknown.
/// `input_values`, if given, are known values of some inputs (shape tensors fed by the caller).
Status propagate(const ir::Graph& g, const std::map<std::string, Shape>& input_shapes, Propagation& out,
                 bool strict = true, const std::map<std::string, Tensor>* input_values = nullptr);

}  // namespace kiln

// Helpers shared by the fusion passes: provenance of fused nodes and the small
// pattern-matching questions every fusion asks.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "runtime/shape_eval.h"

namespace kiln {
class BuilderConfig;
}  // namespace kiln

namespace kiln::passes {

/// The string-list attribute naming the original nodes a fused node replaces.
inline constexpr const char* kFusedFromAttr = "kiln.fused_from";

/// Names of the original nodes behind `originals`, in order and without repeats:
/// a node that already carries kiln.fused_from contributes that list instead of its own name.
std::vector<std::string> fused_names(const std::vector<const ir::Node*>& originals);

/// Stores `names` as `fused`'s kiln.fused_from attribute.
void set_fused_names(ir::Node& fused, std::vector<std::string> names);

/// Stores fused_names(originals) in `fused`'s kiln.fused_from attribute. Call it
/// before changing the attributes of an original that `fused` reuses in place.
void record_fusion(ir::Node& fused, const std::vector<const ir::Node*>& originals);

/// Names of the values of `g` that subgraph bodies (If/Loop/Scan) read by name.
std::set<std::string> captured_names(const ir::Graph& g);

/// True when a subgraph body of a node of `g` reads `v` by name.
bool captured(const ir::Graph& g, const ir::Value* v);

/// Names of the values of the subgraph bodies of `g`'s nodes, nested bodies included.
std::set<std::string> body_value_names(const ir::Graph& g);

/// Makes the subgraph bodies of `g`'s nodes (nested ones included) read `to`, a value of
/// `g`, where they read `from` by name. `to`'s name must be free in them (body_value_names).
void redirect_captures(ir::Graph& g, const std::string& from, const ir::Value& to);

/// True when nothing reads `v` (absent, or no reader, no subgraph capture and not a graph output).
bool unread(const ir::Graph& g, const ir::Value* v);

/// The one node reading `v`, if `v` is not a graph output, no subgraph body reads it
/// and exactly one node reads it.
ir::Node* only_reader(const ir::Graph& g, const ir::Value* v);

/// An ONNX-domain node of type `op` with `arity` inputs, all present, and one output.
bool is_onnx_op(const ir::Node* n, const char* op, size_t arity);

/// A windowed node (Conv, MaxPool, ...) whose padding is its `pads` attribute: auto_pad absent,
/// empty or NOTSET.
bool explicit_pads(const ir::Node& n);

/// `n`'s ints attribute `name` equals `want`, or is absent (when `absent_ok`).
bool ints_are(const ir::Node& n, const char* name, const std::vector<int64_t>& want, bool absent_ok = true);

/// FP16 or BF16.
bool half_dtype(DataType t);

/// A channels-last conv node (kiln.nhwc, X not NCHW, no kiln.max_pool) with one output, a 1x1
/// kernel, no groups, padding or dilation and equal strides (returned in `stride`), whose X is of
/// `dt` with statically known channels C and whose W (a constant OHWI [M, 1, 1, C]) and bias, if
/// any, are of `dt`. The node's type and its other kiln attributes are the caller's to check.
bool nhwc_conv1x1(const ir::Node& n, DataType dt, int64_t& stride);

/// A 1x1 conv's operands: X of `dt`, rank 4 channels-last with statically known channels C, W a
/// constant OHWI [M, 1, 1, C] of `dt`, the bias (null: none) of `dt`; C in `c`.
bool conv1x1_operands(const ir::Value* x, const ir::Value* w, const ir::Value* b, DataType dt, int64_t& c);

/// The nodes a fusion pass absorbed into others. drop() detaches one (inputs and outputs cleared:
/// the caller has moved what it needs onto the fused node and re-pointed the values' producers);
/// finish() removes them from the graph, prunes the values nothing uses and returns how many
/// went (the pass's count of fusions where each absorbs one node).
class Removals {
 public:
  void drop(ir::Node* n) {
    n->inputs.clear();
    n->outputs.clear();
    removed_.insert(n);
  }
  bool has(const ir::Node* n) const { return removed_.count(n) != 0; }
  int finish(ir::Graph& g);

 private:
  std::set<const ir::Node*> removed_;
};

/// False when an NHWC value's pixels (its first three dims) times `c` channels are statically
/// known to reach 2^31 elements (the limit of kiln's 32-bit-indexed conv kernels); true where a
/// dim is unknown or the value has no rank-4 shape.
bool nhwc_under_2g(const ir::Value* v, int64_t c);

/// The other input of a two-input node given one of them; nullptr when `v` is not an input
/// (or is both).
ir::Value* other_input(const ir::Node* n, const ir::Value* v);

/// A one-element constant whose rank is at most `max_rank` (so that it does not
/// broadcast its partner to a higher rank); its value in `out`.
bool scalar_constant(const ir::Value* v, size_t max_rank, double& out);

/// Integer list from a constant value (Reshape's shape, opset-13 axes); false if not constant.
bool constant_ints(const ir::Value* v, std::vector<int64_t>& out);

/// An ONNX Slice (opset 10+) with constant bounds along one axis, step 1: the axis (normalized)
/// and the [begin, end) it takes, clamped to input 0's extent there, which must be known;
/// false otherwise, or when the range is empty.
bool one_axis_slice(const ir::Node* n, int64_t& axis, int64_t& begin, int64_t& end);

/// Concrete types at the first optimization profile's opt shapes (declared shapes for
/// inputs without a range); empty when they cannot be worked out. For decisions about
/// profit (which layout, which kernel), never correctness: other dims in the range may differ.
Propagation opt_types(const ir::Graph& g, const BuilderConfig& cfg);

/// The shape of v at the opt shapes when that propagation knows it, else its inferred
/// shape (exported reshapes compute their targets from Shape, which symbolic inference
/// leaves unknown); null when neither is known.
const Shape* opt_shape(const ir::Value* v, const Propagation& opt);

}  // namespace kiln::passes

// The IR: a Graph of Nodes connected by Values. Nodes are kept in topological order.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/shape.h"
#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln::ir {

class Graph;
class Node;

/// Memory layout of an activation. Row-major NCHW-style unless a pass changes it.
enum class Layout { kRowMajor = 0, kNHWC = 1 };
/// Where a node executes.
enum class Device { kCPU = 0, kCUDA = 1 };

/// A typed tensor flowing between nodes (an activation, input, or initializer).
struct Value {
  std::string name;
  DataType dtype = DataType::kUndefined;
  std::optional<Shape> shape;  ///< nullopt: rank unknown
  Layout layout = Layout::kRowMajor;
  Node* producer = nullptr;    ///< nullptr for graph inputs and initializers
  std::shared_ptr<Tensor> initializer;  ///< set for weights/constants

  bool is_constant() const { return initializer != nullptr; }
};

/// One attribute value.
struct Attribute {
  enum class Kind { kFloat, kInt, kString, kTensor, kGraph, kFloats, kInts, kStrings, kTensors, kGraphs };
  Kind kind = Kind::kInt;
  float f = 0.f;
  int64_t i = 0;
  std::string s;
  Tensor t;
  std::shared_ptr<Graph> g;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
  std::vector<Tensor> tensors;
  std::vector<std::shared_ptr<Graph>> graphs;

  static Attribute from_int(int64_t v) { Attribute a; a.kind = Kind::kInt; a.i = v; return a; }
  static Attribute from_float(float v) { Attribute a; a.kind = Kind::kFloat; a.f = v; return a; }
  static Attribute from_string(std::string v) { Attribute a; a.kind = Kind::kString; a.s = std::move(v); return a; }
  static Attribute from_ints(std::vector<int64_t> v) { Attribute a; a.kind = Kind::kInts; a.ints = std::move(v); return a; }
  static Attribute from_floats(std::vector<float> v) { Attribute a; a.kind = Kind::kFloats; a.floats = std::move(v); return a; }
  static Attribute from_tensor(Tensor v) { Attribute a; a.kind = Kind::kTensor; a.t = std::move(v); return a; }
};

/// Name -> attribute, with typed getters that fall back to defaults.
class Attributes {
 public:
  bool has(const std::string& n) const { return map_.count(n) != 0; }
  void set(const std::string& n, Attribute a) { map_[n] = std::move(a); }
  void erase(const std::string& n) { map_.erase(n); }
  const Attribute* find(const std::string& n) const {
    auto it = map_.find(n);
    return it == map_.end() ? nullptr : &it->second;
  }
  int64_t get_int(const std::string& n, int64_t def) const {
    auto* a = find(n);
    return a ? a->i : def;
  }
  float get_float(const std::string& n, float def) const {
    auto* a = find(n);
    return a ? a->f : def;
  }
  std::string get_string(const std::string& n, const std::string& def) const {
    auto* a = find(n);
    return a ? a->s : def;
  }
  std::vector<int64_t> get_ints(const std::string& n, std::vector<int64_t> def = {}) const {
    auto* a = find(n);
    return a ? a->ints : def;
  }
  std::vector<float> get_floats(const std::string& n, std::vector<float> def = {}) const {
    auto* a = find(n);
    return a ? a->floats : def;
  }
  const Tensor* get_tensor(const std::string& n) const {
    auto* a = find(n);
    return a && a->kind == Attribute::Kind::kTensor ? &a->t : nullptr;
  }
  const std::map<std::string, Attribute>& all() const { return map_; }

 private:
  std::map<std::string, Attribute> map_;
};

/// An operator application.
class Node {
 public:
  std::string name;
  std::string op_type;
  std::string domain;  ///< "" is the default ONNX domain
  int opset = 0;       ///< opset version of `domain` the node was imported with
  std::vector<Value*> inputs;   ///< nullptr marks an omitted optional input
  std::vector<Value*> outputs;  ///< nullptr marks an omitted optional output
  Attributes attrs;
  // Decided by the builder:
  DataType precision = DataType::kFloat32;
  Device device = Device::kCPU;
  std::string kernel;  ///< chosen kernel name, e.g. "ref", "cpu.onednn"

  /// Input i or nullptr if absent.
  Value* input(size_t i) const { return i < inputs.size() ? inputs[i] : nullptr; }
  /// "'name' (OpType)" for messages.
  std::string describe() const;
};

/// A graph: values, nodes in topological order, inputs and outputs.
class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  std::string name;
  std::map<std::string, int> opset_imports;  ///< domain -> version
  std::vector<Value*> inputs;
  std::vector<Value*> outputs;

  /// Value by name, or nullptr.
  Value* find_value(const std::string& name) const;
  /// Creates a value; fails if the name exists.
  Result<Value*> add_value(const std::string& name, DataType dtype = DataType::kUndefined,
                           std::optional<Shape> shape = std::nullopt);
  /// Creates a value with a fresh name derived from `hint`.
  Value* add_unique_value(const std::string& hint, DataType dtype = DataType::kUndefined);
  /// A value holding a constant tensor.
  Value* add_constant(const std::string& hint, Tensor t);
  /// A name not yet used by a value or node.
  std::string unique_name(const std::string& hint);
  /// Appends a node (caller keeps topological order or calls topo_sort()).
  Node* add_node(const std::string& op_type, const std::vector<Value*>& inputs,
                 const std::vector<Value*>& outputs, const std::string& name = "");
  /// Nodes in order.
  const std::vector<std::unique_ptr<Node>>& nodes() const { return nodes_; }
  /// Removes nodes for which `pred` is true (producer links of their outputs are cleared).
  template <typename Pred>
  void remove_nodes_if(Pred pred);
  /// Replaces every use of `from` (node inputs and graph outputs) with `to`.
  void replace_uses(Value* from, Value* to);
  /// Nodes that read `v`.
  std::vector<Node*> consumers(const Value* v) const;
  /// Sorts nodes topologically; fails naming a node on a cycle.
  Status topo_sort();
  /// Deletes values no node, input or output refers to.
  void prune_values();
  /// All values (ordered by name).
  const std::map<std::string, std::unique_ptr<Value>>& values() const { return values_; }
  /// Deep copy (initializer buffers are shared, they are immutable).
  std::unique_ptr<Graph> clone() const;
  /// True if `v` is a graph output.
  bool is_output(const Value* v) const;
  /// Values read by nodes (or subgraphs) that are defined by no node/input/initializer here.
  std::vector<std::string> outer_references() const;

 private:
  std::map<std::string, std::unique_ptr<Value>> values_;
  std::vector<std::unique_ptr<Node>> nodes_;
  int64_t name_counter_ = 0;
};

/// Calls f(Graph&) for each subgraph attribute of `n` (If branches, Loop/Scan bodies).
template <typename F>
void for_each_subgraph(const Node& n, F&& f) {
  for (auto& [k, a] : n.attrs.all()) {
    if (a.g) f(*a.g);
    for (auto& sg : a.graphs)
      if (sg) f(*sg);
  }
}

/// Names of enclosing-scope values that `n`'s subgraph attributes (If/Loop/Scan
/// bodies) read by name: uses that appear in no node's inputs. May repeat a name.
std::vector<std::string> subgraph_captures(const Node& n);

template <typename Pred>
void Graph::remove_nodes_if(Pred pred) {
  std::vector<std::unique_ptr<Node>> kept;
  kept.reserve(nodes_.size());
  for (auto& n : nodes_) {
    if (pred(*n)) {
      for (Value* o : n->outputs)
        if (o && o->producer == n.get()) o->producer = nullptr;
    } else {
      kept.push_back(std::move(n));
    }
  }
  nodes_ = std::move(kept);
}

/// Checks structure: names unique, every input defined before use, outputs produced once.
Status verify(const Graph& g);
/// A readable text dump, one node per line with dtypes and shapes.
std::string dump(const Graph& g);

}  // namespace kiln::ir

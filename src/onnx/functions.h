// Model-local functions (ModelProto.functions): calls are inlined into the calling graph.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "onnx/onnx.pb.h"

namespace kiln::onnx_import {

/// Domain ("" for the default ONNX domain) -> opset version.
using Opsets = std::map<std::string, int>;

/// "" for "ai.onnx", else the domain itself.
inline std::string canonical_domain(const std::string& d) { return d == "ai.onnx" ? std::string() : d; }

/// A node to import: one of the graph's own, or one that came from inlining a function.
struct FlatNode {
  const onnx::NodeProto* node = nullptr;
  std::shared_ptr<const onnx::NodeProto> owned;  ///< keeps an inlined copy alive
  std::shared_ptr<const Opsets> opsets;          ///< opsets the node is read with
  int index = -1;                                ///< index of the graph node it came from
  std::string via;                               ///< "" or "in function 'F' called by node 'n': " (for messages)
};

/// Reports a problem with a call: (graph node index, the node, message).
using ExpandError = std::function<void(int index, const onnx::NodeProto& node, const std::string& msg)>;

/// The model's functions, by (domain, name, overload).
class FunctionLibrary {
 public:
  /// Problems in the definitions themselves (duplicates) go to `problems`.
  FunctionLibrary(const onnx::ModelProto& model, const Opsets& model_opsets, std::vector<std::string>& problems);
  /// The function a node calls, or nullptr.
  const onnx::FunctionProto* find(const onnx::NodeProto& node) const;
  /// The nodes of a graph with every call of a local function replaced by the
  /// function's body (recursively); internal values get fresh names.
  std::vector<FlatNode> expand(const google::protobuf::RepeatedPtrField<onnx::NodeProto>& nodes,
                               const std::shared_ptr<const Opsets>& opsets, const ExpandError& error);

 private:
  using Item = std::pair<const onnx::NodeProto*, std::shared_ptr<const onnx::NodeProto>>;
  void expand_list(const std::vector<Item>& nodes, const std::shared_ptr<const Opsets>& opsets, int outer_index,
                   const std::string& via, int depth, std::vector<FlatNode>& out, const ExpandError& error);
  void inline_call(const onnx::NodeProto& call, const onnx::FunctionProto& fn, int index, const std::string& via,
                   int depth, std::vector<FlatNode>& out, const ExpandError& error);

  std::map<std::string, const onnx::FunctionProto*> functions_;
  Opsets model_opsets_;
  int64_t counter_ = 0;
};

}  // namespace kiln::onnx_import

// OnnxParser: fills a NetworkDefinition from an ONNX ModelProto.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kiln/logger.h"
#include "kiln/network.h"

namespace kiln {

/// One problem found while parsing, naming where it is.
struct ParserError {
  int node_index = -1;    ///< index in graph.node, -1 if not about a node
  std::string node_name;  ///< node name ("" if unnamed or not about a node)
  std::string op_type;    ///< node op type ("" if not about a node)
  std::string message;    ///< what is wrong and what was expected
  /// "node 'conv1' (Conv): message" style text.
  std::string to_string() const;
};

/// What kiln makes of one node of the model's main graph.
struct NodeSupport {
  int index = -1;           ///< index in graph.node
  std::string name;         ///< node name ("" if unnamed)
  std::string op_type;      ///< ONNX op type
  std::string domain;       ///< "" for the default ONNX domain
  int opset = 0;            ///< opset of the node's domain in the model (0 if the domain is not imported)
  bool supported = false;   ///< kiln can build the node
  std::string reason;       ///< why not ("" when supported)
  bool cuda = false;        ///< a CUDA kernel takes the node (else a CUDA engine runs it on the CPU)
  std::string cuda_reason;  ///< why no CUDA kernel takes it ("" when one does)
};

/// A model's capability report, like TensorRT's supportsModel.
struct SupportReport {
  bool supported = false;          ///< every node is supported and the model itself has no problems
  std::vector<NodeSupport> nodes;  ///< one per node of graph.node, in order
  /// Maximal runs of consecutive node indices with the same support (TensorRT's SubGraphCollection).
  std::vector<std::pair<std::vector<int>, bool>> subgraphs;
  std::vector<ParserError> errors;  ///< problems not about one node (opsets, inputs, outputs, the file)
  /// Number of unsupported nodes.
  int num_unsupported() const;
};

/// Parses ONNX models into a network; errors are collected, not thrown.
class OnnxParser {
 public:
  OnnxParser(NetworkDefinition& network, Logger& logger);
  ~OnnxParser();
  /// Parses a serialized ModelProto. External data is resolved relative to
  /// `model_dir` (empty: external data is an error). True on success.
  bool parse(const void* data, size_t size, const std::string& model_dir = "");
  /// Reads and parses a file; external data is looked up beside it.
  bool parse_from_file(const std::string& path);
  /// Says which nodes of a serialized ModelProto kiln supports, without touching the
  /// network. Every problem found is also kept as this parser's errors.
  SupportReport supports_model(const void* data, size_t size, const std::string& model_dir = "");
  /// supports_model() of a file; external data is looked up beside it.
  SupportReport supports_model_file(const std::string& path);
  /// Number of errors from the last parse.
  int num_errors() const { return static_cast<int>(errors_.size()); }
  /// Error i (0 <= i < num_errors()).
  const ParserError& error(int i) const { return errors_[static_cast<size_t>(i)]; }
  /// Forgets errors.
  void clear_errors() { errors_.clear(); }

 private:
  NetworkDefinition& network_;
  Logger& logger_;
  std::vector<ParserError> errors_;
};

}  // namespace kiln

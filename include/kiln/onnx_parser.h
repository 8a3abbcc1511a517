// OnnxParser: fills a NetworkDefinition from an ONNX ModelProto.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "kiln/logger.h"
#include "kiln/network.h"

namespace kiln {

/// One problem found while parsing, naming where it is.
struct ParserError {
  int node_index = -1;      ///< index in graph.node, -1 if not about a node
  std::string node_name;    ///< node name ("" if unnamed or not about a node)
  std::string op_type;      ///< node op type ("" if not about a node)
  std::string message;      ///< what is wrong and what was expected
  /// "node 'conv1' (Conv): message" style text.
  std::string to_string() const;
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

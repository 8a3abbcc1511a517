// The capability report behind OnnxParser::supports_model.
#pragma once

#include <vector>

#include "ir/graph.h"
#include "kiln/onnx_parser.h"
#include "onnx/onnx.pb.h"

namespace kiln::onnx_import {

/// Classifies every node of `model`'s main graph. `graph` holds what the importer made
/// of it (possibly partial) and `errors` what it reported; each node's own type
/// inference then finds the dtypes and attribute values kiln's kernels reject.
SupportReport check_support(const onnx::ModelProto& model, const ir::Graph& graph,
                            const std::vector<ParserError>& errors);

}  // namespace kiln::onnx_import

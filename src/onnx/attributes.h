// ONNX AttributeProto -> ir::Attribute, checked against the types the ONNX schemas declare.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "ir/graph.h"
#include "kiln/status.h"
#include "onnx/onnx.pb.h"

namespace kiln::onnx_import {

/// Imports one subgraph attribute; returns nullptr when it failed (it reports its own errors).
using SubgraphFn = std::function<std::shared_ptr<ir::Graph>(const onnx::GraphProto&, const std::string& attr_name)>;

/// Name of an AttributeProto type ("INT", "FLOATS", ...).
const char* attribute_type_name(int type);

/// Bit mask (1 << AttributeType) of the types ONNX allows for `attr` of `op_type` in
/// `domain` over all opsets; 0 when the schema is unknown.
uint32_t schema_attribute_types(const std::string& domain, const std::string& op_type, const std::string& attr);

/// Converts `a` of a node `op_type` in `domain`. An error with an empty message means a
/// subgraph failed and has already reported why. `note` receives a warning to log, if any.
Status convert_attribute(const onnx::AttributeProto& a, const std::string& domain, const std::string& op_type,
                         const std::string& model_dir, const SubgraphFn& subgraph, ir::Attribute& out,
                         std::string& note);

}  // namespace kiln::onnx_import

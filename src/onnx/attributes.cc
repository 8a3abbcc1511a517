// Attribute conversion. Old IR versions leave `type` unset, so the kind is then read
// off the fields that are present; declared types are checked against the ONNX schemas.
#include "onnx/attributes.h"

#include <unordered_map>

#include "onnx/tensor_proto.h"

namespace kiln::onnx_import {

namespace {

using AP = onnx::AttributeProto;

struct SchemaEntry {
  const char* domain;
  const char* op;
  const char* attr;
  uint32_t mask;
};

const SchemaEntry kSchemaTypes[] = {
#include "onnx/attribute_types.inc"
};

std::string key(const std::string& d, const std::string& op, const std::string& a) {
  std::string k = d;
  k += '\0';
  k += op;
  k += '\0';
  k += a;
  return k;
}

// The kind an attribute holds, judged by its fields (for IR versions without `type`).
int infer_type(const AP& a) {
  if (a.has_t()) return AP::TENSOR;
  if (a.has_g()) return AP::GRAPH;
  if (a.has_sparse_tensor()) return AP::SPARSE_TENSOR;
  if (a.has_tp()) return AP::TYPE_PROTO;
  if (a.floats_size()) return AP::FLOATS;
  if (a.ints_size()) return AP::INTS;
  if (a.strings_size()) return AP::STRINGS;
  if (a.tensors_size()) return AP::TENSORS;
  if (a.graphs_size()) return AP::GRAPHS;
  if (a.has_s()) return AP::STRING;
  if (a.has_i()) return AP::INT;
  if (a.has_f()) return AP::FLOAT;
  return AP::UNDEFINED;
}

// True when a field other than the one of `type` carries data (a type/content mismatch).
bool holds_other(const AP& a, int type) {
  auto other = [&](int t, bool present) { return t != type && present; };
  return other(AP::FLOAT, a.has_f()) || other(AP::INT, a.has_i()) || other(AP::STRING, a.has_s()) ||
         other(AP::TENSOR, a.has_t()) || other(AP::GRAPH, a.has_g()) || other(AP::FLOATS, a.floats_size() > 0) ||
         other(AP::INTS, a.ints_size() > 0) || other(AP::STRINGS, a.strings_size() > 0) ||
         other(AP::TENSORS, a.tensors_size() > 0) || other(AP::GRAPHS, a.graphs_size() > 0);
}

// Scalars and lists may be left at their zero default; a tensor or graph must be there.
bool holds_own(const AP& a, int type) {
  switch (type) {
    case AP::TENSOR: return a.has_t();
    case AP::GRAPH: return a.has_g();
    default: return true;
  }
}

}  // namespace

const char* attribute_type_name(int type) {
  switch (type) {
    case AP::UNDEFINED: return "UNDEFINED";
    case AP::FLOAT: return "FLOAT";
    case AP::INT: return "INT";
    case AP::STRING: return "STRING";
    case AP::TENSOR: return "TENSOR";
    case AP::GRAPH: return "GRAPH";
    case AP::SPARSE_TENSOR: return "SPARSE_TENSOR";
    case AP::TYPE_PROTO: return "TYPE_PROTO";
    case AP::FLOATS: return "FLOATS";
    case AP::INTS: return "INTS";
    case AP::STRINGS: return "STRINGS";
    case AP::TENSORS: return "TENSORS";
    case AP::GRAPHS: return "GRAPHS";
    case AP::SPARSE_TENSORS: return "SPARSE_TENSORS";
    case AP::TYPE_PROTOS: return "TYPE_PROTOS";
    default: return "unknown";
  }
}

uint32_t schema_attribute_types(const std::string& domain, const std::string& op_type, const std::string& attr) {
  static const auto* table = [] {
    auto* m = new std::unordered_map<std::string, uint32_t>();
    for (const auto& e : kSchemaTypes) (*m)[key(e.domain, e.op, e.attr)] = e.mask;
    return m;
  }();
  auto it = table->find(key(domain == "ai.onnx" ? "" : domain, op_type, attr));
  return it == table->end() ? 0u : it->second;
}

Status convert_attribute(const AP& a, const std::string& domain, const std::string& op_type,
                         const std::string& model_dir, const SubgraphFn& subgraph, ir::Attribute& out,
                         std::string& note) {
  const std::string what = "attribute '" + a.name() + "'";
  if (a.name().empty()) return Status(ErrorCode::kInvalidModel, "an attribute has no name");
  if (!a.ref_attr_name().empty())
    return Status(ErrorCode::kUnsupported,
                  what + " refers to attribute '" + a.ref_attr_name() +
                      "' of an enclosing function (ref_attr_name), which is only valid inside a function body");
  int type = a.type();
  if (type == AP::UNDEFINED) type = infer_type(a);
  if (type == AP::UNDEFINED) return Status(ErrorCode::kInvalidModel, what + " has no type and no value");
  if (!AP::AttributeType_IsValid(type))
    return Status(ErrorCode::kInvalidModel, what + " has an unknown type code " + std::to_string(type));
  if (!holds_own(a, type) || holds_other(a, type))
    return Status(ErrorCode::kInvalidModel, what + " declares type " + attribute_type_name(type) +
                                                " but its value is missing or stored in another field");

  const uint32_t allowed = schema_attribute_types(domain, op_type, a.name());
  if (allowed && !(allowed & (1u << type))) {
    // A whole number given where ONNX wants a float is read as that float.
    if (type == AP::INT && (allowed & (1u << AP::FLOAT))) {
      note = what + " of " + op_type + " is INT where ONNX declares FLOAT; reading it as a float";
      out = ir::Attribute::from_float(static_cast<float>(a.i()));
      return Status();
    }
    if (type == AP::INTS && (allowed & (1u << AP::FLOATS))) {
      note = what + " of " + op_type + " is INTS where ONNX declares FLOATS; reading them as floats";
      std::vector<float> v(a.ints().begin(), a.ints().end());
      out = ir::Attribute::from_floats(std::move(v));
      return Status();
    }
    std::string expected;
    for (int t = 0; t < 32; ++t)
      if (allowed & (1u << t)) expected += std::string(expected.empty() ? "" : " or ") + attribute_type_name(t);
    return Status(ErrorCode::kInvalidModel,
                  what + " has type " + attribute_type_name(type) + " but " + op_type + " expects " + expected);
  }

  switch (type) {
    case AP::FLOAT: out = ir::Attribute::from_float(a.f()); break;
    case AP::INT: out = ir::Attribute::from_int(a.i()); break;
    case AP::STRING: out = ir::Attribute::from_string(a.s()); break;
    case AP::FLOATS: out = ir::Attribute::from_floats({a.floats().begin(), a.floats().end()}); break;
    case AP::INTS: out = ir::Attribute::from_ints({a.ints().begin(), a.ints().end()}); break;
    case AP::STRINGS:
      out = ir::Attribute();
      out.kind = ir::Attribute::Kind::kStrings;
      out.strings.assign(a.strings().begin(), a.strings().end());
      break;
    case AP::TENSOR: {
      KILN_ASSIGN_OR_RETURN(Tensor t, tensor_from_proto(a.t(), model_dir, what + " tensor '" + a.t().name() + "'"));
      out = ir::Attribute::from_tensor(std::move(t));
      break;
    }
    case AP::TENSORS: {
      out = ir::Attribute();
      out.kind = ir::Attribute::Kind::kTensors;
      for (int i = 0; i < a.tensors_size(); ++i) {
        KILN_ASSIGN_OR_RETURN(Tensor t,
                              tensor_from_proto(a.tensors(i), model_dir, what + " tensor " + std::to_string(i)));
        out.tensors.push_back(std::move(t));
      }
      break;
    }
    case AP::GRAPH: {
      out = ir::Attribute();
      out.kind = ir::Attribute::Kind::kGraph;
      out.g = subgraph(a.g(), a.name());
      if (!out.g) return Status(ErrorCode::kInvalidModel, "");
      break;
    }
    case AP::GRAPHS: {
      out = ir::Attribute();
      out.kind = ir::Attribute::Kind::kGraphs;
      for (int i = 0; i < a.graphs_size(); ++i) {
        auto g = subgraph(a.graphs(i), a.name() + "[" + std::to_string(i) + "]");
        if (!g) return Status(ErrorCode::kInvalidModel, "");
        out.graphs.push_back(std::move(g));
      }
      break;
    }
    default:
      return Status(ErrorCode::kUnsupported,
                    what + " of type " + std::string(attribute_type_name(type)) + " is not supported by kiln");
  }
  return Status();
}

}  // namespace kiln::onnx_import

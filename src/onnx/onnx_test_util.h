// Test helpers: build small ONNX models in C++ and parse them (tests only).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "builder/network_impl.h"
#include "kiln/onnx_parser.h"
#include "onnx/onnx.pb.h"

namespace kiln::test {

/// A logger that keeps every message.
class RecordingLogger : public Logger {
 public:
  RecordingLogger() : Logger(Severity::kVerbose) {}
  void log(Severity s, const std::string& m) override { messages.emplace_back(s, m); }
  bool saw(Severity s, const std::string& part) const {
    for (auto& [sev, m] : messages)
      if (sev == s && m.find(part) != std::string::npos) return true;
    return false;
  }
  std::vector<std::pair<Severity, std::string>> messages;
};

/// A model with ir_version 8 and the default domain at `opset`.
inline onnx::ModelProto make_model(int opset = 17) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("kiln-test");
  auto* o = m.add_opset_import();
  o->set_domain("");
  o->set_version(opset);
  m.mutable_graph()->set_name("g");
  return m;
}

/// Sets a tensor type; dims: digits = size, "?" = unknown, anything else = symbol.
inline void set_type(onnx::ValueInfoProto* vi, int elem_type, const std::vector<std::string>& dims) {
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem_type);
  auto* shape = tt->mutable_shape();
  for (const auto& d : dims) {
    auto* dim = shape->add_dim();
    if (d == "?") continue;
    if (!d.empty() && d.find_first_not_of("0123456789") == std::string::npos)
      dim->set_dim_value(std::stoll(d));
    else
      dim->set_dim_param(d);
  }
}

inline onnx::ValueInfoProto* add_input(onnx::GraphProto* g, const std::string& name, int elem_type = 1,
                                       const std::vector<std::string>& dims = {"2", "3"}) {
  auto* vi = g->add_input();
  vi->set_name(name);
  set_type(vi, elem_type, dims);
  return vi;
}

inline onnx::ValueInfoProto* add_output(onnx::GraphProto* g, const std::string& name, int elem_type = 1,
                                        const std::vector<std::string>& dims = {"2", "3"}) {
  auto* vi = g->add_output();
  vi->set_name(name);
  set_type(vi, elem_type, dims);
  return vi;
}

inline onnx::NodeProto* add_node(onnx::GraphProto* g, const std::string& op, const std::vector<std::string>& ins,
                                 const std::vector<std::string>& outs, const std::string& name = "") {
  auto* n = g->add_node();
  n->set_op_type(op);
  for (auto& i : ins) n->add_input(i);
  for (auto& o : outs) n->add_output(o);
  if (!name.empty()) n->set_name(name);
  return n;
}

inline onnx::AttributeProto* add_attr(onnx::NodeProto* n, const std::string& name,
                                      onnx::AttributeProto::AttributeType t) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(t);
  return a;
}

/// x -> Identity -> y, float [2,3].
inline onnx::ModelProto identity_model(int opset = 17) {
  onnx::ModelProto m = make_model(opset);
  add_input(m.mutable_graph(), "x");
  add_node(m.mutable_graph(), "Identity", {"x"}, {"y"});
  add_output(m.mutable_graph(), "y");
  return m;
}

/// Parses a model; the network and parser stay alive for inspection.
struct Parsed {
  RecordingLogger logger;
  NetworkDefinition net;
  OnnxParser parser{net, logger};
  bool ok = false;

  ir::Graph& graph() { return net.impl().graph; }
  std::string all_errors() const {
    std::string s;
    for (int i = 0; i < parser.num_errors(); ++i) s += parser.error(i).to_string() + "\n";
    return s;
  }
  /// True if some error's text contains every part.
  bool has_error(const std::vector<std::string>& parts) const {
    for (int i = 0; i < parser.num_errors(); ++i) {
      std::string t = parser.error(i).to_string();
      bool all = true;
      for (auto& p : parts) all = all && t.find(p) != std::string::npos;
      if (all) return true;
    }
    return false;
  }
};

inline std::unique_ptr<Parsed> parse_model(const onnx::ModelProto& m, const std::string& dir = "") {
  auto p = std::make_unique<Parsed>();
  std::string bytes = m.SerializeAsString();
  p->ok = p->parser.parse(bytes.data(), bytes.size(), dir);
  return p;
}

/// A fresh temporary folder, removed at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kiln-onnx-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    path = ::mkdtemp(buf.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string write(const std::string& rel, const std::string& bytes) const {
    auto p = path / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p.string();
  }
};

}  // namespace kiln::test

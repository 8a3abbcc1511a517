// OnnxParser: protobuf decoding of the file or buffer, then the graph import (or the
// capability report, which imports into a scratch network).
#include <fcntl.h>
#include <google/protobuf/io/coded_stream.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <functional>

#include "builder/network_impl.h"
#include "kiln/onnx_parser.h"
#include "onnx/importer.h"
#include "onnx/support.h"

namespace kiln {

std::string ParserError::to_string() const {
  if (node_index < 0 && node_name.empty()) return message;
  std::string s = "node ";
  if (!node_name.empty()) {
    s.append("'").append(node_name).append("' ");
  } else {
    s.append("#").append(std::to_string(node_index)).append(" ");
  }
  if (!op_type.empty()) s.append("(").append(op_type).append(")");
  return s.append(": ").append(message);
}

OnnxParser::OnnxParser(NetworkDefinition& network, Logger& logger) : network_(network), logger_(logger) {}
OnnxParser::~OnnxParser() = default;

namespace {

// Decodes a serialized ModelProto; false (with an error) when it is not one.
bool decode_model(const void* data, size_t size, onnx_import::Diagnostics& diag, onnx::ModelProto& model) {
  if (!data && size) {
    diag.error("parse() was given a null buffer of " + std::to_string(size) + " bytes");
    return false;
  }
  // Protobuf addresses messages with int offsets: 2 GB is a hard ceiling.
  if (size > static_cast<size_t>(INT_MAX)) {
    diag.error("the model is " + std::to_string(size) +
               " bytes; protobuf cannot read a ModelProto over 2 GB: store the weights as external data");
    return false;
  }
  google::protobuf::io::CodedInputStream in(static_cast<const uint8_t*>(data), static_cast<int>(size));
  in.SetTotalBytesLimit(INT_MAX);
  if (size == 0 || !model.ParseFromCodedStream(&in) || !in.ConsumedEntireMessage()) {
    diag.error("not a valid ONNX ModelProto (" + std::to_string(size) +
               " bytes): the data is truncated, corrupt, or not an ONNX file");
    return false;
  }
  return true;
}

using ModelBytesFn = std::function<bool(const void* data, size_t size, const std::string& model_dir)>;

// Maps the model file read-only and hands its bytes and folder to `fn`. False (with an
// error in `errors`) when the file cannot be read, else what `fn` returns.
bool with_model_file(const std::string& path, Logger& logger, std::vector<ParserError>& errors,
                     const ModelBytesFn& fn) {
  auto fail = [&](const std::string& msg) {
    onnx_import::Diagnostics diag(logger, errors);
    diag.error(msg);
    return false;
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("cannot open model file '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail("model file '" + path + "' is not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size > static_cast<size_t>(INT_MAX)) {
    ::close(fd);
    return fail("model file '" + path + "' is " + std::to_string(size) +
                " bytes; protobuf cannot read a ModelProto over 2 GB: store the weights as external data");
  }
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  const std::string model_dir = dir.empty() ? std::string(".") : dir.string();
  if (size == 0) {
    ::close(fd);
    return fail("not a valid ONNX ModelProto (0 bytes): model file '" + path + "' is empty");
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) return fail("cannot map model file '" + path + "': " + std::strerror(errno));
  bool ok = fn(m, size, model_dir);
  ::munmap(m, size);
  if (!ok)
    for (auto& e : errors)
      if (e.node_index < 0 && e.message.rfind("not a valid ONNX ModelProto", 0) == 0)
        e.message += " (file '" + path + "')";
  return ok;
}

}  // namespace

int SupportReport::num_unsupported() const {
  int n = 0;
  for (const auto& node : nodes) n += node.supported ? 0 : 1;
  return n;
}

bool OnnxParser::parse(const void* data, size_t size, const std::string& model_dir) {
  errors_.clear();
  onnx_import::Diagnostics diag(logger_, errors_);
  onnx::ModelProto model;
  if (!decode_model(data, size, diag, model)) return false;
  ir::Graph& g = network_graph(network_);
  if (!g.nodes().empty() || !g.values().empty() || !g.inputs.empty() || !g.outputs.empty()) {
    diag.error("the network already holds a graph; parse into a new NetworkDefinition");
    return false;
  }
  bool ok = onnx_import::import_model(model, model_dir, g, diag);
  if (ok)
    diag.info("parsed ONNX model: " + std::to_string(g.nodes().size()) + " nodes, " + std::to_string(g.inputs.size()) +
              " inputs, " + std::to_string(g.outputs.size()) + " outputs");
  return ok && errors_.empty();
}

bool OnnxParser::parse_from_file(const std::string& path) {
  errors_.clear();
  return with_model_file(path, logger_, errors_,
                         [&](const void* data, size_t size, const std::string& dir) { return parse(data, size, dir); });
}

SupportReport OnnxParser::supports_model(const void* data, size_t size, const std::string& model_dir) {
  errors_.clear();
  onnx_import::Diagnostics diag(logger_, errors_);
  onnx::ModelProto model;
  if (!decode_model(data, size, diag, model)) {
    SupportReport r;
    r.errors = errors_;
    return r;
  }
  // A scratch network: the report never fills (or needs) this parser's network.
  NetworkDefinition scratch;
  ir::Graph& g = network_graph(scratch);
  onnx_import::import_model(model, model_dir, g, diag);
  return onnx_import::check_support(model, g, errors_);
}

SupportReport OnnxParser::supports_model_file(const std::string& path) {
  errors_.clear();
  SupportReport report;
  with_model_file(path, logger_, errors_, [&](const void* data, size_t size, const std::string& dir) {
    report = supports_model(data, size, dir);
    return report.supported;
  });
  // The file could not be read or decoded: the errors (naming the file) are all there is.
  if (report.nodes.empty() && !errors_.empty()) {
    report.errors = errors_;
    report.supported = false;
  }
  return report;
}

}  // namespace kiln

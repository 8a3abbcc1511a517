#include "plan/engine_file.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "kiln/kiln.h"

namespace kiln::plan {

using nlohmann::json;

namespace {

// The file checksum (docs/engine-format.md, format 2): eight FNV-1a-style lanes over
// little-endian 64-bit words, each step followed by a shift-xor so high bits reach
// low ones, then the lanes, the tail bytes and the length folded into one value.
// Eight independent chains run at memory speed (byte-wise FNV-1a took ~0.5 s per
// 400 MB both when writing and when loading an engine).
constexpr uint64_t kFnvBasis = 1469598103934665603ull, kFnvPrime = 1099511628211ull;

uint64_t load_le64(const uint8_t* p) {
  uint64_t w = 0;
  for (int b = 7; b >= 0; --b) w = (w << 8) | p[b];
  return w;
}

uint64_t file_checksum(const uint8_t* p, size_t n) {
  uint64_t h[8];
  for (int l = 0; l < 8; ++l) h[l] = kFnvBasis ^ static_cast<uint64_t>(l);
  const size_t blocks = n / 64;
  for (size_t i = 0; i < blocks; ++i, p += 64)
    for (int l = 0; l < 8; ++l) {
      uint64_t x = (h[l] ^ load_le64(p + 8 * l)) * kFnvPrime;
      h[l] = x ^ (x >> 29);
    }
  uint64_t r = kFnvBasis;
  for (int l = 0; l < 8; ++l) r = (r ^ h[l]) * kFnvPrime;
  for (size_t i = 0; i < n % 64; ++i) r = (r ^ p[i]) * kFnvPrime;
  return (r ^ static_cast<uint64_t>(n)) * kFnvPrime;
}

uint64_t align_up(uint64_t x) { return (x + kAlignment - 1) / kAlignment * kAlignment; }

// Lays out the weight blob: records where each tensor goes; serialize_engine then
// copies every tensor once, straight into the file image (the tensors belong to the
// graph being written, which outlives the call).
struct BlobWriter {
  struct Piece {
    const uint8_t* data;
    uint64_t offset, bytes;
  };
  std::vector<Piece> pieces;
  uint64_t size = 0;
  json add(const Tensor& t) {
    uint64_t off = align_up(size);
    pieces.push_back({static_cast<const uint8_t*>(t.data()), off, t.nbytes()});
    size = off + t.nbytes();
    return json{{"dtype", static_cast<int>(t.dtype())}, {"dims", t.dims()}, {"offset", off}, {"bytes", t.nbytes()}};
  }
};

struct BlobReader {
  std::shared_ptr<uint8_t[]> owner;
  uint8_t* base = nullptr;
  uint64_t size = 0;
  Result<Tensor> get(const json& j) const {
    DataType dt = static_cast<DataType>(j.at("dtype").get<int>());
    Dims dims = j.at("dims").get<Dims>();
    uint64_t off = j.at("offset").get<uint64_t>(), n = j.at("bytes").get<uint64_t>();
    int64_t vol = dims_volume(dims);
    if (vol < 0 || dtype_size(dt) == 0 || static_cast<uint64_t>(vol) * dtype_size(dt) != n || off > size ||
        n > size - off)
      return Status(ErrorCode::kInvalidModel, "engine weight record is out of bounds or inconsistent");
    return Tensor::view(dt, dims, base + off, std::shared_ptr<void>(owner, base));
  }
};

json shape_json(const std::optional<Shape>& s) {
  if (!s) return nullptr;
  json a = json::array();
  for (const Dim& d : *s) a.push_back(d.known() ? json(d.value) : json(d.name));
  return a;
}

std::optional<Shape> shape_from_json(const json& j) {
  if (j.is_null()) return std::nullopt;
  Shape s;
  for (const json& d : j) s.push_back(d.is_number() ? Dim(d.get<int64_t>()) : Dim::symbol(d.get<std::string>()));
  return s;
}

json graph_json(const ir::Graph& g, BlobWriter& blob);

json attr_json(const ir::Attribute& a, BlobWriter& blob) {
  using K = ir::Attribute::Kind;
  json j{{"kind", static_cast<int>(a.kind)}};
  switch (a.kind) {
    case K::kFloat:
      j["v"] = a.f;
      break;
    case K::kInt:
      j["v"] = a.i;
      break;
    case K::kString:
      j["v"] = a.s;
      break;
    case K::kTensor:
      j["v"] = blob.add(a.t);
      break;
    case K::kGraph:
      j["v"] = graph_json(*a.g, blob);
      break;
    case K::kFloats:
      j["v"] = a.floats;
      break;
    case K::kInts:
      j["v"] = a.ints;
      break;
    case K::kStrings:
      j["v"] = a.strings;
      break;
    case K::kTensors: {
      json arr = json::array();
      for (auto& t : a.tensors) arr.push_back(blob.add(t));
      j["v"] = arr;
      break;
    }
    case K::kGraphs: {
      json arr = json::array();
      for (auto& sg : a.graphs) arr.push_back(graph_json(*sg, blob));
      j["v"] = arr;
      break;
    }
  }
  return j;
}

json graph_json(const ir::Graph& g, BlobWriter& blob) {
  json values = json::array();
  for (auto& [name, v] : g.values()) {
    json jv{{"name", name},
            {"dtype", static_cast<int>(v->dtype)},
            {"shape", shape_json(v->shape)},
            {"layout", static_cast<int>(v->layout)}};
    if (v->initializer) jv["weight"] = blob.add(*v->initializer);
    values.push_back(std::move(jv));
  }
  json nodes = json::array();
  for (auto& n : g.nodes()) {
    json ins = json::array(), outs = json::array(), attrs = json::object();
    for (ir::Value* v : n->inputs) ins.push_back(v ? v->name : "");
    for (ir::Value* v : n->outputs) outs.push_back(v ? v->name : "");
    for (auto& [k, a] : n->attrs.all()) attrs[k] = attr_json(a, blob);
    nodes.push_back(json{{"name", n->name},
                         {"op", n->op_type},
                         {"domain", n->domain},
                         {"opset", n->opset},
                         {"inputs", ins},
                         {"outputs", outs},
                         {"attrs", attrs},
                         {"kernel", n->kernel},
                         {"precision", static_cast<int>(n->precision)},
                         {"device", static_cast<int>(n->device)}});
  }
  json inputs = json::array(), outputs = json::array();
  for (ir::Value* v : g.inputs) inputs.push_back(v->name);
  for (ir::Value* v : g.outputs) outputs.push_back(v->name);
  return json{{"name", g.name}, {"opsets", g.opset_imports}, {"values", values},
              {"nodes", nodes}, {"inputs", inputs},          {"outputs", outputs}};
}

Result<std::shared_ptr<ir::Graph>> graph_from_json(const json& j, const BlobReader& blob);

Result<ir::Attribute> attr_from_json(const json& j, const BlobReader& blob) {
  using K = ir::Attribute::Kind;
  ir::Attribute a;
  int kind = j.at("kind").get<int>();
  if (kind < 0 || kind > static_cast<int>(K::kGraphs)) return Status(ErrorCode::kInvalidModel, "bad attribute kind");
  a.kind = static_cast<K>(kind);
  const json& v = j.at("v");
  switch (a.kind) {
    case K::kFloat:
      a.f = v.get<float>();
      break;
    case K::kInt:
      a.i = v.get<int64_t>();
      break;
    case K::kString:
      a.s = v.get<std::string>();
      break;
    case K::kTensor: {
      KILN_ASSIGN_OR_RETURN(a.t, blob.get(v));
      break;
    }
    case K::kGraph: {
      KILN_ASSIGN_OR_RETURN(a.g, graph_from_json(v, blob));
      break;
    }
    case K::kFloats:
      a.floats = v.get<std::vector<float>>();
      break;
    case K::kInts:
      a.ints = v.get<std::vector<int64_t>>();
      break;
    case K::kStrings:
      a.strings = v.get<std::vector<std::string>>();
      break;
    case K::kTensors:
      for (auto& t : v) {
        KILN_ASSIGN_OR_RETURN(Tensor x, blob.get(t));
        a.tensors.push_back(std::move(x));
      }
      break;
    case K::kGraphs:
      for (auto& sg : v) {
        KILN_ASSIGN_OR_RETURN(auto x, graph_from_json(sg, blob));
        a.graphs.push_back(std::move(x));
      }
      break;
  }
  return a;
}

Result<std::shared_ptr<ir::Graph>> graph_from_json(const json& j, const BlobReader& blob) {
  auto g = std::make_shared<ir::Graph>();
  g->name = j.at("name").get<std::string>();
  g->opset_imports = j.at("opsets").get<std::map<std::string, int>>();
  for (const json& jv : j.at("values")) {
    KILN_ASSIGN_OR_RETURN(
        ir::Value * v, g->add_value(jv.at("name").get<std::string>(), static_cast<DataType>(jv.at("dtype").get<int>()),
                                    shape_from_json(jv.at("shape"))));
    v->layout = static_cast<ir::Layout>(jv.at("layout").get<int>());
    if (jv.contains("weight")) {
      KILN_ASSIGN_OR_RETURN(Tensor t, blob.get(jv.at("weight")));
      v->initializer = std::make_shared<Tensor>(std::move(t));
    }
  }
  auto lookup = [&](const json& name) -> Result<ir::Value*> {
    std::string n = name.get<std::string>();
    if (n.empty()) return static_cast<ir::Value*>(nullptr);
    ir::Value* v = g->find_value(n);
    if (!v) return Status(ErrorCode::kInvalidModel, "engine refers to unknown tensor '" + n + "'");
    return v;
  };
  for (const json& jn : j.at("nodes")) {
    std::vector<ir::Value*> ins, outs;
    for (auto& x : jn.at("inputs")) {
      KILN_ASSIGN_OR_RETURN(ir::Value * v, lookup(x));
      ins.push_back(v);
    }
    for (auto& x : jn.at("outputs")) {
      KILN_ASSIGN_OR_RETURN(ir::Value * v, lookup(x));
      outs.push_back(v);
    }
    ir::Node* n = g->add_node(jn.at("op").get<std::string>(), ins, outs, jn.at("name").get<std::string>());
    n->domain = jn.at("domain").get<std::string>();
    n->opset = jn.at("opset").get<int>();
    n->kernel = jn.at("kernel").get<std::string>();
    n->precision = static_cast<DataType>(jn.at("precision").get<int>());
    n->device = static_cast<ir::Device>(jn.at("device").get<int>());
    for (auto& [k, ja] : jn.at("attrs").items()) {
      KILN_ASSIGN_OR_RETURN(ir::Attribute a, attr_from_json(ja, blob));
      n->attrs.set(k, std::move(a));
    }
  }
  for (auto& x : j.at("inputs")) {
    KILN_ASSIGN_OR_RETURN(ir::Value * v, lookup(x));
    if (!v) return Status(ErrorCode::kInvalidModel, "engine graph input has no name");
    g->inputs.push_back(v);
  }
  for (auto& x : j.at("outputs")) {
    KILN_ASSIGN_OR_RETURN(ir::Value * v, lookup(x));
    if (!v) return Status(ErrorCode::kInvalidModel, "engine graph output has no name");
    g->outputs.push_back(v);
  }
  KILN_RETURN_IF_ERROR(ir::verify(*g).with_context("engine graph"));
  return g;
}

void put_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

struct Sections {
  const uint8_t* metadata = nullptr;
  uint64_t metadata_bytes = 0;
  const uint8_t* weights = nullptr;
  uint64_t weights_bytes = 0;
};

Result<Sections> check_header(const uint8_t* data, size_t size) {
  if (!data || size < kHeaderBytes)
    return Status(ErrorCode::kInvalidModel, "engine file is truncated: " + std::to_string(size) +
                                                " bytes, the header alone is " + std::to_string(kHeaderBytes));
  if (std::memcmp(data, kMagic, 8) != 0)
    return Status(ErrorCode::kInvalidModel, "not a kiln engine (the file does not start with \"KILNENG\")");
  uint32_t version = get_u32(data + 8);
  if (version != kFormatVersion)
    return Status(ErrorCode::kVersionMismatch, "engine format version " + std::to_string(version) +
                                                   " is not supported; this kiln (" + version_string() +
                                                   ") reads version " + std::to_string(kFormatVersion) +
                                                   ": rebuild the engine from the model");
  uint64_t file_bytes = get_u64(data + 16);
  if (file_bytes != size)
    return Status(ErrorCode::kInvalidModel, "engine file is " + std::to_string(size) + " bytes but its header says " +
                                                std::to_string(file_bytes) + " (truncated or padded)");
  Sections s;
  uint64_t mo = get_u64(data + 24), mb = get_u64(data + 32), wo = get_u64(data + 40), wb = get_u64(data + 48);
  if (mo < kHeaderBytes || mo > size || mb > size - mo || wo > size || wb > size - wo)
    return Status(ErrorCode::kInvalidModel, "engine section offsets are out of bounds (corrupt header)");
  uint64_t checksum = get_u64(data + 56);
  uint64_t actual = file_checksum(data + kHeaderBytes, size - kHeaderBytes);
  if (checksum != actual)
    return Status(ErrorCode::kInvalidModel, "engine checksum mismatch: the file is corrupt (stored " +
                                                std::to_string(checksum) + ", computed " + std::to_string(actual) +
                                                ")");
  s.metadata = data + mo;
  s.metadata_bytes = mb;
  s.weights = data + wo;
  s.weights_bytes = wb;
  return s;
}

}  // namespace

std::string host_arch() {
#if defined(__x86_64__)
  return "x86_64";
#elif defined(__aarch64__)
  return "aarch64";
#else
  return "unknown";
#endif
}

std::vector<uint8_t> serialize_engine(const EngineModel& m) {
  BlobWriter blob;
  json meta;
  meta["kiln_version"] = m.kiln_version;
  meta["device"] = json{{"type", m.device}, {"arch", m.device_arch}};
  meta["options"] = m.options;
  meta["graph"] = graph_json(*m.graph, blob);
  json profiles = json::array();
  for (auto& p : m.profiles) {
    json jp = json::object();
    for (auto& [name, r] : p) jp[name] = json{{"min", r[0]}, {"opt", r[1]}, {"max", r[2]}};
    profiles.push_back(jp);
  }
  meta["profiles"] = profiles;
  json slots = json::object();
  for (auto& [name, s] : m.memory.slots) slots[name] = json{{"offset", s.offset}, {"size", s.size}};
  meta["memory"] = json{{"arena_bytes", m.memory.arena_bytes}, {"naive_bytes", m.memory.naive_bytes}, {"slots", slots}};
  meta["metadata"] = m.metadata;
  meta["build"] = json{{"stats", m.build_stats}, {"seconds", m.build_seconds}};
  std::string text = meta.dump();

  uint64_t mo = kHeaderBytes, mb = text.size();
  uint64_t wo = align_up(mo + mb), wb = blob.size;
  std::vector<uint8_t> out;
  out.reserve(wo + wb);  // one allocation; each weight is copied once, without a zero fill first
  out.resize(wo, 0);     // header, metadata, padding
  for (const BlobWriter::Piece& p : blob.pieces) {
    out.resize(wo + p.offset, 0);  // alignment padding before this tensor
    out.insert(out.end(), p.data, p.data + p.bytes);
  }
  std::memcpy(out.data(), kMagic, 8);
  put_u32(out.data() + 8, kFormatVersion);
  put_u32(out.data() + 12, static_cast<uint32_t>(kHeaderBytes));
  put_u64(out.data() + 16, out.size());
  put_u64(out.data() + 24, mo);
  put_u64(out.data() + 32, mb);
  put_u64(out.data() + 40, wo);
  put_u64(out.data() + 48, wb);
  std::memcpy(out.data() + mo, text.data(), mb);
  put_u64(out.data() + 56, file_checksum(out.data() + kHeaderBytes, out.size() - kHeaderBytes));
  return out;
}

Result<std::string> engine_metadata_json(const uint8_t* data, size_t size) {
  KILN_ASSIGN_OR_RETURN(Sections s, check_header(data, size));
  return std::string(reinterpret_cast<const char*>(s.metadata), s.metadata_bytes);
}

Result<EngineModel> deserialize_engine(const uint8_t* data, size_t size) {
  KILN_ASSIGN_OR_RETURN(Sections s, check_header(data, size));
  json meta = json::parse(s.metadata, s.metadata + s.metadata_bytes, nullptr, /*allow_exceptions=*/false);
  if (meta.is_discarded() || !meta.is_object())
    return Status(ErrorCode::kInvalidModel, "engine metadata is not valid JSON (corrupt file)");
  EngineModel m;
  try {
    m.kiln_version = meta.at("kiln_version").get<std::string>();
    if (m.kiln_version != version_string())
      return Status(ErrorCode::kVersionMismatch, "engine was built by kiln " + m.kiln_version + ", this is kiln " +
                                                     version_string() + ": rebuild the engine from the model");
    m.device = meta.at("device").at("type").get<std::string>();
    m.device_arch = meta.at("device").at("arch").get<std::string>();
    if (meta.contains("options")) m.options = meta.at("options").get<std::map<std::string, std::string>>();
    BlobReader blob;
    blob.size = s.weights_bytes;
    // One aligned copy of the weights, shared by every context of the engine.
    blob.owner = std::shared_ptr<uint8_t[]>(new (std::align_val_t(64)) uint8_t[s.weights_bytes + 64],
                                            [](uint8_t* p) { operator delete[](p, std::align_val_t(64)); });
    blob.base = blob.owner.get();
    if (s.weights_bytes) std::memcpy(blob.base, s.weights, s.weights_bytes);
    KILN_ASSIGN_OR_RETURN(m.graph, graph_from_json(meta.at("graph"), blob));
    for (auto& jp : meta.at("profiles")) {
      ProfileRanges p;
      for (auto& [name, r] : jp.items())
        p[name] = {r.at("min").get<Dims>(), r.at("opt").get<Dims>(), r.at("max").get<Dims>()};
      m.profiles.push_back(std::move(p));
    }
    const json& mem = meta.at("memory");
    m.memory.arena_bytes = mem.at("arena_bytes").get<uint64_t>();
    m.memory.naive_bytes = mem.at("naive_bytes").get<uint64_t>();
    for (auto& [name, js] : mem.at("slots").items()) {
      Slot slot{js.at("offset").get<uint64_t>(), js.at("size").get<uint64_t>()};
      if (slot.offset > m.memory.arena_bytes || slot.size > m.memory.arena_bytes - slot.offset)
        return Status(ErrorCode::kInvalidModel, "engine memory plan slot '" + name + "' lies outside the arena");
      m.memory.slots[name] = slot;
    }
    m.metadata = meta.at("metadata").get<std::map<std::string, std::string>>();
    m.build_stats = meta.at("build").at("stats").get<std::map<std::string, int>>();
    m.build_seconds = meta.at("build").at("seconds").get<double>();
  } catch (const json::exception& e) {
    return Status(ErrorCode::kInvalidModel, std::string("engine metadata is malformed: ") + e.what());
  }
  return m;
}

}  // namespace kiln::plan

// Parser tests: hostile bytes (garbage, truncation, mutations), files, and external
// data that must stay inside the model's folder.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "onnx/onnx_test_util.h"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;

bool parse_bytes(const std::string& bytes, Parsed& p, const std::string& dir = "") {
  return p.parser.parse(bytes.data(), bytes.size(), dir);
}

TEST(OnnxParser, EmptyAndNullBuffersAreRefused) {
  Parsed p;
  EXPECT_FALSE(p.parser.parse(nullptr, 0));
  ASSERT_EQ(p.parser.num_errors(), 1);
  EXPECT_NE(p.parser.error(0).message.find("not a valid ONNX ModelProto (0 bytes)"), std::string::npos);
  EXPECT_FALSE(p.parser.parse(nullptr, 10));
  EXPECT_NE(p.parser.error(0).message.find("null buffer"), std::string::npos);
}

TEST(OnnxParser, RandomBytesAreRefusedWithoutCrashing) {
  std::mt19937 rng(2024);
  for (size_t size : {1u, 2u, 7u, 64u, 1000u, 65536u}) {
    for (int rep = 0; rep < 20; ++rep) {
      std::string bytes(size, '\0');
      for (auto& c : bytes) c = static_cast<char>(rng() & 0xff);
      Parsed p;
      EXPECT_FALSE(parse_bytes(bytes, p)) << size;
      ASSERT_GT(p.parser.num_errors(), 0) << size;
      EXPECT_FALSE(p.parser.error(0).message.empty());
    }
  }
}

TEST(OnnxParser, TruncatedModelsAreRefused) {
  onnx::ModelProto m = identity_model();
  auto* w = m.mutable_graph()->add_initializer();
  w->set_name("w");
  w->set_data_type(1);
  w->add_dims(64);
  w->set_raw_data(std::string(256, '\x3f'));
  const std::string full = m.SerializeAsString();
  {
    Parsed p;
    ASSERT_TRUE(parse_bytes(full, p)) << p.all_errors();
  }
  int invalid_proto = 0;
  for (size_t len = 0; len < full.size(); ++len) {
    Parsed p;
    EXPECT_FALSE(parse_bytes(full.substr(0, len), p)) << len;
    ASSERT_GT(p.parser.num_errors(), 0) << len;
    if (p.parser.error(0).message.find("not a valid ONNX ModelProto (" + std::to_string(len) + " bytes)") !=
        std::string::npos)
      ++invalid_proto;
  }
  // Most cuts land inside a field; those must be named as a broken file.
  EXPECT_GT(invalid_proto, static_cast<int>(full.size()) / 2);
}

TEST(OnnxParser, MutatedModelsNeverCrash) {
  onnx::ModelProto m = identity_model();
  auto* w = m.mutable_graph()->add_initializer();
  w->set_name("w");
  w->set_data_type(7);
  w->add_dims(4);
  for (int i = 0; i < 4; ++i) w->add_int64_data(i * 1000 - 7);
  auto* n = m.mutable_graph()->mutable_node(0);
  auto* a = n->add_attribute();
  a->set_name("perm");
  a->set_type(onnx::AttributeProto::INTS);
  a->add_ints(1);
  a->add_ints(0);
  const std::string full = m.SerializeAsString();
  std::mt19937 rng(99);
  int parsed_ok = 0;
  for (int rep = 0; rep < 3000; ++rep) {
    std::string bytes = full;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng() & 0xff);
    Parsed p;
    bool ok = parse_bytes(bytes, p);
    if (ok) {
      ++parsed_ok;
      EXPECT_TRUE(ir::verify(p.graph()).ok());
    } else {
      EXPECT_GT(p.parser.num_errors(), 0);
    }
  }
  EXPECT_LT(parsed_ok, 3000);
}

TEST(OnnxParser, FilesAndTheirErrors) {
  TempDir dir;
  std::string good = dir.write("model.onnx", identity_model().SerializeAsString());
  {
    Parsed p;
    EXPECT_TRUE(p.parser.parse_from_file(good)) << p.all_errors();
  }
  {
    Parsed p;
    EXPECT_FALSE(p.parser.parse_from_file((dir.path / "missing.onnx").string()));
    EXPECT_TRUE(p.has_error({"cannot open model file", "missing.onnx"})) << p.all_errors();
  }
  {
    Parsed p;
    EXPECT_FALSE(p.parser.parse_from_file(dir.path.string()));
    EXPECT_TRUE(p.has_error({"not a regular file"})) << p.all_errors();
  }
  {
    std::string empty = dir.write("empty.onnx", "");
    Parsed p;
    EXPECT_FALSE(p.parser.parse_from_file(empty));
    EXPECT_TRUE(p.has_error({"0 bytes", "empty"})) << p.all_errors();
  }
  {
    std::string junk = dir.write("junk.onnx", std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 10));
    Parsed p;
    EXPECT_FALSE(p.parser.parse_from_file(junk));
    EXPECT_TRUE(p.has_error({"not a valid ONNX ModelProto (10 bytes)", "junk.onnx"})) << p.all_errors();
  }
}

// ---------------------------------------------------------------- external data

struct ExternalCase {
  onnx::ModelProto model = identity_model();
  onnx::TensorProto* tensor = nullptr;
  std::vector<float> values{1.5f, -2.f, 3.25f, 4.f, -5.5f, 6.f};

  ExternalCase(const std::string& location, int64_t offset, int64_t length = -1) {
    tensor = model.mutable_graph()->add_initializer();
    tensor->set_name("w");
    tensor->set_data_type(1);
    tensor->add_dims(2);
    tensor->add_dims(3);
    tensor->set_data_location(onnx::TensorProto::EXTERNAL);
    auto kv = [&](const char* k, const std::string& v) {
      auto* e = tensor->add_external_data();
      e->set_key(k);
      e->set_value(v);
    };
    kv("location", location);
    if (offset >= 0) kv("offset", std::to_string(offset));
    if (length >= 0) kv("length", std::to_string(length));
  }
  std::string bytes_at(size_t offset) const {
    std::string s(offset, '\x55');
    s.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
    return s;
  }
  // Writes the model beside the data and parses it from the file.
  std::unique_ptr<Parsed> parse_in(const TempDir& dir, const std::string& model_rel = "model.onnx") const {
    std::string path = dir.write(model_rel, model.SerializeAsString());
    auto p = std::make_unique<Parsed>();
    p->ok = p->parser.parse_from_file(path);
    return p;
  }
  void expect_values(Parsed& p) const {
    ASSERT_TRUE(p.ok) << p.all_errors();
    const ir::Value* v = p.graph().find_value("w");
    ASSERT_TRUE(v && v->initializer);
    EXPECT_EQ(v->initializer->dims(), (Dims{2, 3}));
    EXPECT_EQ(v->initializer->to_float_vector(), values);
  }
};

TEST(OnnxParser, ExternalDataRoundTrips) {
  TempDir dir;
  // Offsets: aligned (mapped), unaligned (copied), and no offset/length at all.
  for (int64_t offset : {0, 4096, 64, 3}) {
    ExternalCase c("weights.bin", offset, 24);
    dir.write("weights.bin", c.bytes_at(static_cast<size_t>(offset)));
    auto p = c.parse_in(dir);
    c.expect_values(*p);
  }
  {
    ExternalCase c("sub/dir/w.bin", -1, -1);  // the whole file
    dir.write("sub/dir/w.bin", c.bytes_at(0));
    auto p = c.parse_in(dir);
    c.expect_values(*p);
  }
  {
    // A symlink that stays inside the folder is fine.
    ExternalCase c("link.bin", 0, 24);
    dir.write("real.bin", c.bytes_at(0));
    fs::create_symlink(dir.path / "real.bin", dir.path / "link.bin");
    auto p = c.parse_in(dir);
    c.expect_values(*p);
  }
  {
    // A mapped constant can be written without touching the file (copy-on-write).
    ExternalCase c("cow.bin", 0, 24);
    std::string path = dir.write("cow.bin", c.bytes_at(0));
    auto p = c.parse_in(dir);
    ASSERT_TRUE(p->ok) << p->all_errors();
    p->graph().find_value("w")->initializer->data_as<float>()[0] = 42.f;
    auto again = c.parse_in(dir);
    c.expect_values(*again);
  }
  {
    // Also from a TENSOR attribute.
    ExternalCase c("attr.bin", 0, 24);
    dir.write("attr.bin", c.bytes_at(0));
    auto* a = c.model.mutable_graph()->mutable_node(0)->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    *a->mutable_t() = *c.tensor;
    auto p = c.parse_in(dir);
    ASSERT_TRUE(p->ok) << p->all_errors();
    EXPECT_EQ(p->graph().nodes()[0]->attrs.get_tensor("value")->to_float_vector(), c.values);
  }
}

TEST(OnnxParser, ExternalDataMustStayInsideTheModelFolder) {
  TempDir outside;
  TempDir dir;
  ExternalCase base("x", 0, 24);
  std::string secret = outside.write("secret.bin", base.bytes_at(0));
  fs::create_directories(dir.path / "m");
  fs::create_symlink(secret, dir.path / "m" / "escape.bin");
  fs::create_symlink(outside.path, dir.path / "m" / "escape_dir");
  struct Case {
    std::string location;
    std::vector<std::string> expect;
  };
  std::vector<Case> cases = {
      {secret, {"'w'", "absolute paths are not allowed"}},     {"../secret.bin", {"'..' is not allowed"}},
      {"sub/../../secret.bin", {"'..' is not allowed"}},       {"escape.bin", {"outside the model folder"}},
      {"escape_dir/secret.bin", {"outside the model folder"}}, {"", {"no 'location'"}},
      {"missing.bin", {"cannot open", "missing.bin"}},         {".", {"outside the model folder"}},
  };
  for (const auto& c : cases) {
    ExternalCase ec(c.location, 0, 24);
    auto p = ec.parse_in(dir, "m/model.onnx");
    EXPECT_FALSE(p->ok) << c.location;
    EXPECT_TRUE(p->has_error(c.expect)) << c.location << ":\n" << p->all_errors();
  }
  {
    // A NUL byte must not cut the path short of the check.
    ExternalCase ec(std::string("ok.bin\0/../../x", 15), 0, 24);
    auto p = ec.parse_in(dir, "m/model.onnx");
    EXPECT_FALSE(p->ok);
  }
  // A directory named as the data file.
  fs::create_directories(dir.path / "m" / "adir");
  ExternalCase ec("adir", 0, 24);
  auto p = ec.parse_in(dir, "m/model.onnx");
  EXPECT_FALSE(p->ok);
  EXPECT_TRUE(p->has_error({"not a regular file"})) << p->all_errors();
}

TEST(OnnxParser, ExternalDataRangesAreChecked) {
  TempDir dir;
  ExternalCase base("w.bin", 0, 24);
  dir.write("w.bin", base.bytes_at(8));  // 32 bytes
  struct Case {
    int64_t offset, length;
    std::vector<std::string> expect;
  };
  std::vector<Case> cases = {
      {16, 24, {"offset 16 + length 24 runs past the end of the file (32 bytes)"}},
      {40, 24, {"offset 40 is beyond the end"}},
      {0, 16, {"holds 16 bytes", "needs 24"}},
      {0, -1, {"holds 32 bytes", "needs 24"}},
      {int64_t{1} << 62, 24, {"beyond the end"}},
  };
  for (const auto& c : cases) {
    ExternalCase ec("w.bin", c.offset, c.length);
    auto p = ec.parse_in(dir);
    EXPECT_FALSE(p->ok);
    EXPECT_TRUE(p->has_error(c.expect)) << c.offset << "," << c.length << ":\n" << p->all_errors();
    EXPECT_TRUE(p->has_error({"'w.bin'"})) << p->all_errors();
  }
  {
    ExternalCase ec("w.bin", 0, 24);
    auto* e = ec.tensor->add_external_data();
    e->set_key("offset");
    e->set_value("-8");
    auto p = ec.parse_in(dir);
    EXPECT_TRUE(p->has_error({"offset '-8' is not a non-negative integer"})) << p->all_errors();
  }
  {
    // Parsing from memory without a folder cannot reach external data.
    ExternalCase ec("w.bin", 8, 24);
    auto p = parse_model(ec.model);
    EXPECT_FALSE(p->ok);
    EXPECT_TRUE(p->has_error({"needs the model's folder"})) << p->all_errors();
    // With the folder it works.
    auto q = parse_model(ec.model, dir.path.string());
    ec.expect_values(*q);
  }
}

}  // namespace
}  // namespace kiln::test

// Malformed models, engines and inputs: each must give a clear error through the C++
// API and a non-zero exit with "kiln: error:" from the kiln command, never a crash.
// The model is written with the ONNX protobuf classes (no Python needed):
//   y = Relu(MatMul(x[batch,32], W[32,16]) + z[batch,16]), profile batch 1..4.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>

#include "../../tools/kiln/npy.h"
#include "cli_runner.h"
#include "kiln/kiln.h"
#include "onnx/onnx.pb.h"

namespace fs = std::filesystem;
using kiln::testing::expect_cli_error;
using kiln::testing::run_cli;

namespace {

void add_io(onnx::ValueInfoProto* v, const std::string& name, int64_t cols) {
  v->set_name(name);
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx::TensorProto::FLOAT);
  tt->mutable_shape()->add_dim()->set_dim_param("batch");
  tt->mutable_shape()->add_dim()->set_dim_value(cols);
}

// The test model. With `external_location` set, W's data lives in that external file.
onnx::ModelProto make_model(const std::string& external_location = "") {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("kiln-bad-input-test");
  m.add_opset_import()->set_version(17);
  auto* g = m.mutable_graph();
  g->set_name("bad_input");
  add_io(g->add_input(), "x", 32);
  add_io(g->add_input(), "z", 16);
  add_io(g->add_output(), "y", 16);
  auto* w = g->add_initializer();
  w->set_name("W");
  w->set_data_type(onnx::TensorProto::FLOAT);
  w->add_dims(32);
  w->add_dims(16);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  std::string raw(32 * 16 * sizeof(float), '\0');
  for (size_t i = 0; i < 32 * 16; ++i) {
    float f = u(rng);
    std::memcpy(&raw[i * 4], &f, 4);
  }
  if (external_location.empty()) {
    w->set_raw_data(raw);
  } else {
    w->set_data_location(onnx::TensorProto::EXTERNAL);
    auto* loc = w->add_external_data();
    loc->set_key("location");
    loc->set_value(external_location);
    auto* len = w->add_external_data();
    len->set_key("length");
    len->set_value(std::to_string(raw.size()));
  }
  auto* mm = g->add_node();
  mm->set_op_type("MatMul");
  mm->set_name("matmul");
  mm->add_input("x");
  mm->add_input("W");
  mm->add_output("xw");
  auto* add = g->add_node();
  add->set_op_type("Add");
  add->set_name("add");
  add->add_input("xw");
  add->add_input("z");
  add->add_output("s");
  auto* relu = g->add_node();
  relu->set_op_type("Relu");
  relu->set_name("relu");
  relu->add_input("s");
  relu->add_output("y");
  return m;
}

std::string serialized_model() { return make_model().SerializeAsString(); }

void write_bytes(const fs::path& p, const void* data, size_t n) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
}
void write_bytes(const fs::path& p, const std::string& s) { write_bytes(p, s.data(), s.size()); }

// Parses and builds; the error text if either step fails, "" on success.
std::string parse_and_build(const std::string& bytes, std::vector<uint8_t>* engine = nullptr) {
  kiln::Logger logger(kiln::Logger::Severity::kInternalError);
  kiln::Builder builder(logger);
  auto net = builder.create_network();
  kiln::OnnxParser parser(*net, logger);
  if (!parser.parse(bytes.data(), bytes.size())) {
    std::string m = parser.num_errors() ? parser.error(0).to_string() : "";
    return m.empty() ? "parse failed without a message" : m;
  }
  auto config = builder.create_builder_config();
  kiln::OptimizationProfile p;
  if (net->find_tensor("x") && net->find_tensor("z")) {
    EXPECT_TRUE(p.set_shape("x", {1, 32}, {2, 32}, {4, 32}).ok());
    EXPECT_TRUE(p.set_shape("z", {1, 16}, {2, 16}, {4, 16}).ok());
    config->add_optimization_profile(p);
  }
  auto plan = builder.build_serialized_network(*net, *config);
  if (!plan.ok()) return plan.status().message().empty() ? "build failed without a message" : plan.status().message();
  if (engine) *engine = plan.value();
  return "";
}

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = kiln::testing::scratch_dir("bad");
    std::string err = parse_and_build(serialized_model(), &engine_);
    ASSERT_EQ(err, "") << "the valid model must build";
    engine_path_ = dir_ / "good.engine";
    write_bytes(engine_path_, engine_.data(), engine_.size());
  }

  std::unique_ptr<kiln::Engine> load() {
    kiln::Runtime rt(logger_);
    auto e = rt.deserialize(engine_.data(), engine_.size());
    EXPECT_TRUE(e.ok()) << e.status().to_string();
    return e.ok() ? std::move(e).value() : nullptr;
  }

  static kiln::Tensor random(kiln::DataType dt, kiln::Dims d) {
    kiln::Tensor t = kiln::Tensor::empty(dt, d);
    std::mt19937 rng(3);
    std::uniform_real_distribution<double> u(-2, 2);
    for (int64_t i = 0; i < t.numel(); ++i) t.set_from_double(i, u(rng));
    return t;
  }

  fs::path write_npy(const std::string& name, const kiln::Tensor& t) {
    fs::path p = dir_ / name;
    EXPECT_TRUE(kiln::cli::npy_write(p.string(), t).ok());
    return p;
  }

  kiln::Logger logger_{kiln::Logger::Severity::kInternalError};
  fs::path dir_, engine_path_;
  std::vector<uint8_t> engine_;
};

TEST_F(BadInput, TruncatedOnnx) {
  std::string full = serialized_model();
  for (size_t cut : {size_t{1}, size_t{7}, full.size() / 3, full.size() / 2, full.size() - 1}) {
    SCOPED_TRACE("cut to " + std::to_string(cut));
    EXPECT_NE(parse_and_build(full.substr(0, cut)), "");
  }
  write_bytes(dir_ / "trunc.onnx", full.substr(0, full.size() / 2));
  auto r = run_cli({"build", (dir_ / "trunc.onnx").string(), "-o", (dir_ / "t.engine").string()});
  expect_cli_error(r, "trunc.onnx");
  EXPECT_FALSE(fs::exists(dir_ / "t.engine"));
  expect_cli_error(run_cli({"run", (dir_ / "trunc.onnx").string()}));
}

TEST_F(BadInput, RandomBytesOnnx) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 50; ++trial) {
    std::string junk(1 + rng() % 3000, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    EXPECT_NE(parse_and_build(junk), "") << "random bytes built an engine (trial " << trial << ")";
  }
  std::string junk(512, '\0');
  for (char& c : junk) c = static_cast<char>(rng());
  write_bytes(dir_ / "junk.onnx", junk);
  expect_cli_error(run_cli({"build", (dir_ / "junk.onnx").string(), "-o", (dir_ / "j.engine").string()}));
  expect_cli_error(run_cli({"inspect", (dir_ / "junk.onnx").string()}));
  write_bytes(dir_ / "empty.onnx", std::string());
  expect_cli_error(run_cli({"build", (dir_ / "empty.onnx").string(), "-o", (dir_ / "e.engine").string()}));
}

TEST_F(BadInput, ExternalDataOutsideModelFolder) {
  // A real data file sits outside the model's folder: only the location is wrong.
  fs::create_directories(dir_ / "model");
  std::string data(32 * 16 * sizeof(float), '\x01');
  write_bytes(dir_ / "outside.bin", data);
  for (std::string loc : {std::string("../outside.bin"), (dir_ / "outside.bin").string()}) {
    SCOPED_TRACE(loc);
    fs::path model = dir_ / "model" / "model.onnx";
    write_bytes(model, make_model(loc).SerializeAsString());
    kiln::Builder builder(logger_);
    auto net = builder.create_network();
    kiln::OnnxParser parser(*net, logger_);
    EXPECT_FALSE(parser.parse_from_file(model.string()));
    ASSERT_GT(parser.num_errors(), 0);
    EXPECT_NE(parser.error(0).to_string().find("outside.bin"), std::string::npos) << parser.error(0).to_string();
    expect_cli_error(run_cli({"build", model.string(), "-o", (dir_ / "x.engine").string()}), "outside.bin");
  }
  // The same file inside the folder loads.
  write_bytes(dir_ / "model" / "w.bin", data);
  write_bytes(dir_ / "model" / "ok.onnx", make_model("w.bin").SerializeAsString());
  kiln::Builder builder(logger_);
  auto net = builder.create_network();
  kiln::OnnxParser parser(*net, logger_);
  EXPECT_TRUE(parser.parse_from_file((dir_ / "model" / "ok.onnx").string()))
      << (parser.num_errors() ? parser.error(0).to_string() : "");
}

TEST_F(BadInput, CorruptedEngine) {
  auto bad = engine_;
  bad[bad.size() / 2] ^= 0x5a;
  kiln::Runtime rt(logger_);
  auto e = rt.deserialize(bad.data(), bad.size());
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), kiln::ErrorCode::kInvalidModel) << e.status().to_string();
  EXPECT_NE(e.status().message().find("corrupt"), std::string::npos) << e.status().to_string();
  write_bytes(dir_ / "corrupt.engine", bad.data(), bad.size());
  expect_cli_error(run_cli({"run", (dir_ / "corrupt.engine").string()}), "corrupt");
  expect_cli_error(run_cli({"inspect", (dir_ / "corrupt.engine").string()}), "corrupt");
  expect_cli_error(run_cli({"bench", (dir_ / "corrupt.engine").string(), "--iterations", "1"}), "corrupt");
}

TEST_F(BadInput, TruncatedEngine) {
  kiln::Runtime rt(logger_);
  for (size_t n : {size_t{0}, size_t{4}, size_t{8}, size_t{63}, size_t{64}, engine_.size() / 2, engine_.size() - 1}) {
    auto e = rt.deserialize(engine_.data(), n);
    EXPECT_FALSE(e.ok()) << "an engine cut to " << n << " bytes was accepted";
  }
  write_bytes(dir_ / "cut.engine", engine_.data(), engine_.size() / 2);
  expect_cli_error(run_cli({"run", (dir_ / "cut.engine").string()}));
}

TEST_F(BadInput, WrongEngineVersion) {
  // docs/engine-format.md: magic "KILNENG\0", then uint32 format_version at offset 8.
  ASSERT_GE(engine_.size(), 12u);
  ASSERT_EQ(std::memcmp(engine_.data(), "KILNENG\0", 8), 0);
  auto bad = engine_;
  uint32_t v;
  std::memcpy(&v, bad.data() + 8, 4);
  v += 1;
  std::memcpy(bad.data() + 8, &v, 4);
  kiln::Runtime rt(logger_);
  auto e = rt.deserialize(bad.data(), bad.size());
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), kiln::ErrorCode::kVersionMismatch) << e.status().to_string();
  EXPECT_NE(e.status().message().find("version"), std::string::npos) << e.status().to_string();
  write_bytes(dir_ / "v.engine", bad.data(), bad.size());
  expect_cli_error(run_cli({"run", (dir_ / "v.engine").string()}), "version");
}

TEST_F(BadInput, ShapeOutsideProfile) {
  auto engine = load();
  ASSERT_TRUE(engine);
  auto ctx = engine->create_execution_context();
  kiln::Status s = ctx->set_input_shape("x", {8, 32});
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), kiln::ErrorCode::kOutOfRange) << s.to_string();
  EXPECT_NE(s.message().find("x"), std::string::npos) << s.to_string();
  auto out =
      ctx->infer({{"x", random(kiln::DataType::kFloat32, {8, 32})}, {"z", random(kiln::DataType::kFloat32, {8, 16})}});
  EXPECT_FALSE(out.ok());
  // A static dim that differs from the model is refused too.
  EXPECT_FALSE(ctx->set_input_shape("x", {2, 31}).ok());
  expect_cli_error(run_cli({"run", engine_path_.string(), "--shapes", "x:8x32,z:8x16"}));
  auto x = write_npy("x8.npy", random(kiln::DataType::kFloat32, {8, 32}));
  auto z = write_npy("z8.npy", random(kiln::DataType::kFloat32, {8, 16}));
  expect_cli_error(run_cli({"run", engine_path_.string(), "--input", "x=" + x.string(), "--input", "z=" + z.string()}));
  // And the valid batch runs (the failures above are about the shape, not the engine).
  auto ok =
      ctx->infer({{"x", random(kiln::DataType::kFloat32, {3, 32})}, {"z", random(kiln::DataType::kFloat32, {3, 16})}});
  EXPECT_TRUE(ok.ok()) << ok.status().to_string();
}

TEST_F(BadInput, MissingInput) {
  auto engine = load();
  ASSERT_TRUE(engine);
  auto ctx = engine->create_execution_context();
  auto out = ctx->infer({{"x", random(kiln::DataType::kFloat32, {2, 32})}});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("z"), std::string::npos) << out.status().to_string();
  auto x = write_npy("x.npy", random(kiln::DataType::kFloat32, {2, 32}));
  expect_cli_error(run_cli({"run", engine_path_.string(), "--input", "x=" + x.string()}), "z");
  // An input name the engine does not have.
  expect_cli_error(run_cli({"run", engine_path_.string(), "--input", "nope=" + x.string()}), "nope");
}

TEST_F(BadInput, WrongDtype) {
  auto engine = load();
  ASSERT_TRUE(engine);
  auto ctx = engine->create_execution_context();
  auto out =
      ctx->infer({{"x", random(kiln::DataType::kInt32, {2, 32})}, {"z", random(kiln::DataType::kFloat32, {2, 16})}});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("x"), std::string::npos) << out.status().to_string();
  auto xi = write_npy("xi.npy", random(kiln::DataType::kInt32, {2, 32}));
  auto z = write_npy("z.npy", random(kiln::DataType::kFloat32, {2, 16}));
  expect_cli_error(run_cli({"run", engine_path_.string(), "--input", "x=" + xi.string(), "--input", "z=" + z.string()}),
                   "int32");
  // Wrong rank.
  auto out2 = ctx->infer(
      {{"x", random(kiln::DataType::kFloat32, {2, 32, 1})}, {"z", random(kiln::DataType::kFloat32, {2, 16})}});
  EXPECT_FALSE(out2.ok());
}

TEST_F(BadInput, HostileNpyInputs) {
  auto good = kiln::cli::npy_serialize(random(kiln::DataType::kFloat32, {2, 32})).value();
  auto z = write_npy("z.npy", random(kiln::DataType::kFloat32, {2, 16}));
  std::vector<std::pair<std::string, std::vector<uint8_t>>> files;
  files.push_back({"truncated.npy", std::vector<uint8_t>(good.begin(), good.begin() + good.size() / 2)});
  files.push_back({"header_only.npy", std::vector<uint8_t>(good.begin(), good.begin() + 20)});
  auto fortran = good;
  std::string h(fortran.begin(), fortran.begin() + 128);
  size_t pos = h.find("False");
  std::memcpy(fortran.data() + pos, "True ", 5);
  files.push_back({"fortran.npy", fortran});
  auto huge_len = good;
  huge_len[8] = 0xff;
  huge_len[9] = 0xff;
  files.push_back({"huge_header.npy", huge_len});
  std::vector<uint8_t> junk(300);
  std::mt19937 rng(5);
  for (auto& b : junk) b = static_cast<uint8_t>(rng());
  files.push_back({"junk.npy", junk});
  for (const auto& [name, bytes] : files) {
    SCOPED_TRACE(name);
    write_bytes(dir_ / name, bytes.data(), bytes.size());
    expect_cli_error(
        run_cli({"run", engine_path_.string(), "--input", "x=" + (dir_ / name).string(), "--input", "z=" + z.string()}),
        name);
  }
  expect_cli_error(run_cli({"run", engine_path_.string(), "--input", "x=" + (dir_ / "missing.npy").string()}),
                   "missing.npy");
}

TEST_F(BadInput, CliUsageErrors) {
  expect_cli_error(run_cli({}), "", 2);
  expect_cli_error(run_cli({"frobnicate"}), "", 2);
  expect_cli_error(run_cli({"run", engine_path_.string(), "--no-such-flag"}), "", 2);
  expect_cli_error(run_cli({"build", "model.onnx"}), "", 2);  // no -o
  expect_cli_error(run_cli({"run", engine_path_.string(), "--shapes", "x:2y32"}), "2y32");
  expect_cli_error(run_cli({"run", (dir_ / "no_such_file.engine").string()}), "no_such_file.engine");
  auto ok = run_cli({"--help"});
  EXPECT_EQ(ok.code, 0) << ok.output;
  // The valid engine runs with random inputs, also with the model after a repeatable option.
  auto r = run_cli({"run", engine_path_.string(), "--shapes", "x:3x32,z:3x16"});
  EXPECT_EQ(r.code, 0) << r.output;
  r = run_cli({"run", "--shapes", "x:3x32,z:3x16", engine_path_.string()});
  EXPECT_EQ(r.code, 0) << r.output;
}

}  // namespace

// End-to-end: small models (CNN, transformer block, dynamic batch over two profiles, a ViT-style
// classifier read at its first token)
// built to engine files with `kiln build`, run with `kiln run` and through the C++
// API, compared with onnxruntime's outputs. tests/models/make_models.py writes the
// models and references (once per script version) with fixed seeds.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../../tools/kiln/npy.h"
#include "cli_runner.h"
#include "kiln/kiln.h"

namespace fs = std::filesystem;
using kiln::testing::run_cli;

namespace {

constexpr double kMaxRelError = 1e-4;

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string python() {
  if (const char* p = std::getenv("KILN_PYTHON"); p && *p) return p;
  fs::path venv = fs::path(KILN_SOURCE_DIR) / "build" / "venv" / "bin" / "python3";
  if (fs::exists(venv)) return venv.string();
  return "python3";
}

// The generated models' folder, or "" with `why` set when they cannot be made here.
fs::path model_dir(std::string* why) {
  static std::string cached_why;
  static fs::path cached;
  static bool done = false;
  if (done) {
    *why = cached_why;
    return cached;
  }
  done = true;
  fs::path script = fs::path(KILN_SOURCE_DIR) / "tests" / "models" / "make_models.py";
  // Keyed by the script's content: editing it regenerates.
  size_t h = std::hash<std::string>{}(read_text(script));
  char tag[32];
  std::snprintf(tag, sizeof tag, "%016zx", h);
  fs::path dir = fs::path(KILN_BINARY_DIR) / "tests" / (std::string("e2e_models_") + tag);
  if (fs::exists(dir / "manifest.json")) return cached = dir;
  std::string py = kiln::testing::shell_quote(python());
  if (std::system((py + " -c 'import onnx, onnxruntime, numpy' >/dev/null 2>&1").c_str()) != 0) {
    cached_why = "needs python3 with onnx, onnxruntime and numpy (run ./setup.sh); tried " + python();
    *why = cached_why;
    return {};
  }
  // Generate beside the target and rename, so parallel test processes never see half a folder.
  fs::path tmp = dir.string() + ".tmp" + std::to_string(getpid());
  fs::remove_all(tmp);
  std::string cmd = py + " " + kiln::testing::shell_quote(script.string()) + " " +
                    kiln::testing::shell_quote(tmp.string()) + " >/dev/null";
  if (std::system(cmd.c_str()) != 0 || !fs::exists(tmp / "manifest.json")) {
    cached_why = "make_models.py failed: " + cmd;
    *why = cached_why;
    return {};
  }
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec) fs::remove_all(tmp);  // another process got there first
  if (!fs::exists(dir / "manifest.json")) {
    cached_why = "cannot create " + dir.string();
    *why = cached_why;
    return {};
  }
  return cached = dir;
}

nlohmann::json load_model_entry(const fs::path& dir, const std::string& name) {
  auto manifest = nlohmann::json::parse(read_text(dir / "manifest.json"));
  for (const auto& m : manifest["models"])
    if (m["name"] == name) return m;
  return {};
}

// Same rule as the tool, written independently: keep [A-Za-z0-9._-], else '_'.
std::string expected_file_name(const std::string& name) {
  std::string s;
  for (unsigned char c : name) s += (std::isalnum(c) || c == '.' || c == '_' || c == '-') ? static_cast<char>(c) : '_';
  return s + ".npy";
}

// max |a - e| / max |e| over the tensor.
void expect_close(const kiln::Tensor& a, const kiln::Tensor& e, const std::string& what,
                  double max_rel_error = kMaxRelError) {
  ASSERT_EQ(a.dtype(), e.dtype()) << what;
  ASSERT_EQ(a.dims(), e.dims()) << what;
  double max_err = 0, max_ref = 0;
  for (int64_t i = 0; i < e.numel(); ++i) {
    double x = a.get_as_double(i), y = e.get_as_double(i);
    ASSERT_TRUE(std::isfinite(x)) << what << " element " << i;
    max_err = std::max(max_err, std::fabs(x - y));
    max_ref = std::max(max_ref, std::fabs(y));
  }
  ASSERT_GT(max_ref, 0) << what << ": the reference is all zeros, the comparison would prove nothing";
  EXPECT_LE(max_err / max_ref, max_rel_error) << what << ": max abs error " << max_err << ", max |ref| " << max_ref;
}

kiln::Tensor load_npy(const fs::path& p) {
  auto t = kiln::cli::npy_read(p.string());
  EXPECT_TRUE(t.ok()) << t.status().to_string();
  return t.ok() ? t.value() : kiln::Tensor();
}

// Builds `model` to an engine file with the CLI; returns its path.
fs::path build_engine(const fs::path& dir, const nlohmann::json& model, const fs::path& work,
                      const std::vector<std::string>& extra = {}) {
  fs::path engine = work / (model["name"].get<std::string>() + ".engine");
  std::vector<std::string> args = {"build", (dir / model["onnx"].get<std::string>()).string(), "-o", engine.string()};
  for (const auto& a : model["build_args"]) args.push_back(a.get<std::string>());
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = run_cli(args);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(engine)) << r.output;
  return engine;
}

class E2EModels : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string why;
    dir_ = model_dir(&why);
    if (dir_.empty()) GTEST_SKIP() << why;
    model_ = load_model_entry(dir_, GetParam());
    ASSERT_FALSE(model_.is_null()) << "no model " << GetParam() << " in the manifest";
  }
  fs::path dir_;
  nlohmann::json model_;
};

TEST_P(E2EModels, CliMatchesOnnxRuntime) {
  fs::path work = kiln::testing::scratch_dir("e2e");
  fs::path engine = build_engine(dir_, model_, work);
  ASSERT_TRUE(fs::exists(engine));
  for (const auto& c : model_["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    fs::path out = work / ("out_" + c["name"].get<std::string>());
    std::vector<std::string> args = {"run", engine.string(), "--output-dir", out.string()};
    for (auto it = c["inputs"].begin(); it != c["inputs"].end(); ++it)
      args.insert(args.end(), {"--input", it.key() + "=" + (dir_ / it.value().get<std::string>()).string()});
    auto r = run_cli(args);
    ASSERT_EQ(r.code, 0) << r.output;
    // The CLI picks the profile that holds the input shapes by itself.
    if (c.contains("profile")) {
      EXPECT_NE(r.output.find("(profile " + std::to_string(c["profile"].get<int>()) + ")"), std::string::npos)
          << r.output;
    }
    for (auto it = c["outputs"].begin(); it != c["outputs"].end(); ++it) {
      fs::path got = out / expected_file_name(it.key());
      ASSERT_TRUE(fs::exists(got)) << "no " << got << "\n" << r.output;
      expect_close(load_npy(got), load_npy(dir_ / it.value().get<std::string>()), it.key());
    }
  }
}

TEST_P(E2EModels, ApiMatchesOnnxRuntime) {
  fs::path work = kiln::testing::scratch_dir("e2e");
  fs::path engine_path = build_engine(dir_, model_, work);
  ASSERT_TRUE(fs::exists(engine_path));
  kiln::Logger logger(kiln::Logger::Severity::kWarning);
  kiln::Runtime runtime(logger);
  auto engine = runtime.deserialize_file(engine_path.string());
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  if (GetParam() == "dynamic") {
    ASSERT_EQ(engine.value()->num_optimization_profiles(), 2);
    auto p1 = engine.value()->get_tensor_profile_shape("x", 1);
    ASSERT_EQ(p1.size(), 3u);
    EXPECT_EQ(p1[0], (kiln::Dims{5, 32}));
    EXPECT_EQ(p1[2], (kiln::Dims{16, 32}));
    EXPECT_EQ(engine.value()->get_tensor_shape("x"), (kiln::Dims{-1, 32}));
  }
  // One context for all cases: switching profiles and shapes between runs must work.
  auto ctx = engine.value()->create_execution_context();
  for (const auto& c : model_["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    std::map<std::string, kiln::Tensor> inputs;
    for (auto it = c["inputs"].begin(); it != c["inputs"].end(); ++it)
      inputs[it.key()] = load_npy(dir_ / it.value().get<std::string>());
    ASSERT_TRUE(ctx->set_optimization_profile(c.value("profile", 0)).ok());
    auto out = ctx->infer(inputs);
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    for (auto it = c["outputs"].begin(); it != c["outputs"].end(); ++it) {
      auto o = out.value().find(it.key());
      ASSERT_NE(o, out.value().end()) << "no output " << it.key();
      expect_close(o->second, load_npy(dir_ / it.value().get<std::string>()), it.key());
    }
  }
}

// The same models on the GPU: FP32 (TF32 off) within 1e-4, FP16 within 1e-2, with
// plain launches, CUDA graph replay, and one context reused across shapes/profiles.
kiln::Tensor converted(const kiln::Tensor& t, kiln::DataType dt) {
  if (t.dtype() == dt) return t;
  kiln::Tensor r = kiln::Tensor::empty(dt, t.dims());
  for (int64_t i = 0; i < t.numel(); ++i) r.set_from_double(i, t.get_as_double(i));
  return r;
}

// `io`: the engine's float I/O dtype (16-bit I/O passes the engine's precision through).
void run_cuda_case(const fs::path& dir, const nlohmann::json& model, const std::vector<std::string>& flags,
                   double tol, bool graph, kiln::DataType io = kiln::DataType::kFloat32) {
  fs::path work = kiln::testing::scratch_dir("e2e_cuda");
  fs::path engine_path = build_engine(dir, model, work, flags);
  ASSERT_TRUE(fs::exists(engine_path));
  kiln::Logger logger(kiln::Logger::Severity::kWarning);
  kiln::Runtime runtime(logger);
  auto engine = runtime.deserialize_file(engine_path.string());
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  EXPECT_EQ(engine.value()->device(), "cuda");
  auto ctx = engine.value()->create_execution_context();
  ctx->set_use_cuda_graph(graph);
  for (int rep = 0; rep < (graph ? 3 : 1); ++rep)
    for (const auto& c : model["cases"]) {
      SCOPED_TRACE(c["name"].get<std::string>() + " run " + std::to_string(rep));
      std::map<std::string, kiln::Tensor> inputs;
      for (auto it = c["inputs"].begin(); it != c["inputs"].end(); ++it) {
        kiln::Tensor t = load_npy(dir / it.value().get<std::string>());
        if (t.dtype() == kiln::DataType::kFloat32) {
          EXPECT_EQ(engine.value()->get_tensor_dtype(it.key()), io);
          t = converted(t, io);
        }
        inputs[it.key()] = t;
      }
      ASSERT_TRUE(ctx->set_optimization_profile(c.value("profile", 0)).ok());
      auto out = ctx->infer(inputs);
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      for (auto it = c["outputs"].begin(); it != c["outputs"].end(); ++it) {
        auto o = out.value().find(it.key());
        ASSERT_NE(o, out.value().end()) << "no output " << it.key();
        kiln::Tensor want = load_npy(dir / it.value().get<std::string>());
        if (want.dtype() == kiln::DataType::kFloat32) {
          EXPECT_EQ(o->second.dtype(), io) << it.key();
        }
        expect_close(converted(o->second, want.dtype()), want, it.key(), tol);
      }
    }
}

TEST_P(E2EModels, CudaFp32MatchesOnnxRuntime) {
  if (!kiln::testing::cuda_available()) GTEST_SKIP() << kiln::testing::no_cuda_reason();
  run_cuda_case(dir_, model_, {"--device", "cuda", "--no-tf32"}, 1e-4, false);
}

TEST_P(E2EModels, CudaGraphFp32MatchesOnnxRuntime) {
  if (!kiln::testing::cuda_available()) GTEST_SKIP() << kiln::testing::no_cuda_reason();
  run_cuda_case(dir_, model_, {"--device", "cuda", "--no-tf32"}, 1e-4, true);
}

TEST_P(E2EModels, CudaFp16MatchesOnnxRuntime) {
  if (!kiln::testing::cuda_available()) GTEST_SKIP() << kiln::testing::no_cuda_reason();
  run_cuda_case(dir_, model_, {"--device", "cuda", "--fp16"}, 1e-2, false);
}

TEST_P(E2EModels, CudaBf16MatchesOnnxRuntime) {
  if (!kiln::testing::cuda_available()) GTEST_SKIP() << kiln::testing::no_cuda_reason();
  run_cuda_case(dir_, model_, {"--device", "cuda", "--bf16"}, 5e-2, false);
}

TEST_P(E2EModels, CudaFp16IoMatchesOnnxRuntime) {
  if (!kiln::testing::cuda_available()) GTEST_SKIP() << kiln::testing::no_cuda_reason();
  run_cuda_case(dir_, model_,
                {"--device", "cuda", "--fp16", "--input-io-formats", "fp16:chw", "--output-io-formats", "fp16"}, 1e-2,
                true, kiln::DataType::kFloat16);
}

TEST(E2E, SixteenBitIoNeedsAMatchingCudaEngine) {
  std::string why;
  fs::path dir = model_dir(&why);
  if (dir.empty()) GTEST_SKIP() << why;
  auto model = load_model_entry(dir, "cnn");
  fs::path work = kiln::testing::scratch_dir("e2e_io");
  auto r = run_cli({"build", (dir / model["onnx"].get<std::string>()).string(), "-o", (work / "x.engine").string(),
                    "--input-io-formats", "fp16"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("I/O dtype float16 needs a CUDA engine built with --fp16"), std::string::npos) << r.output;
  r = run_cli({"build", (dir / model["onnx"].get<std::string>()).string(), "-o", (work / "x.engine").string(),
               "--output-io-formats", "int8"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("--output-io-formats must be fp32, fp16 or bf16"), std::string::npos) << r.output;
}

TEST_P(E2EModels, CudaCliMatchesOnnxRuntime) {
  if (!kiln::testing::cuda_available()) GTEST_SKIP() << kiln::testing::no_cuda_reason();
  fs::path work = kiln::testing::scratch_dir("e2e_cuda_cli");
  fs::path engine = build_engine(dir_, model_, work, {"--device", "cuda", "--no-tf32"});
  for (const auto& c : model_["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    fs::path out = work / ("out_" + c["name"].get<std::string>());
    std::vector<std::string> args = {"run", engine.string(), "--output-dir", out.string()};
    for (auto it = c["inputs"].begin(); it != c["inputs"].end(); ++it)
      args.insert(args.end(), {"--input", it.key() + "=" + (dir_ / it.value().get<std::string>()).string()});
    auto r = run_cli(args);
    ASSERT_EQ(r.code, 0) << r.output;
    for (auto it = c["outputs"].begin(); it != c["outputs"].end(); ++it)
      expect_close(load_npy(out / expected_file_name(it.key())), load_npy(dir_ / it.value().get<std::string>()),
                   it.key());
  }
}

INSTANTIATE_TEST_SUITE_P(E2E, E2EModels, ::testing::Values("cnn", "transformer", "dynamic", "classifier"));

}  // namespace

// `kiln inspect MODEL.onnx`: the capability report (table and JSON), its exit codes,
// and the in-memory build that follows only when every node is supported.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "backends/cuda/tactic_sink.h"
#include "cli_runner.h"
#include "onnx/onnx.pb.h"
#include "plan/engine_file.h"

namespace fs = std::filesystem;
using kiln::testing::run_cli;

namespace {

void add_io(onnx::ValueInfoProto* v, const std::string& name, int elem = onnx::TensorProto::FLOAT) {
  v->set_name(name);
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem);
  tt->mutable_shape()->add_dim()->set_dim_value(2);
  tt->mutable_shape()->add_dim()->set_dim_value(8);
}

onnx::NodeProto* add_node(onnx::GraphProto* g, const std::string& op, const std::string& in, const std::string& out,
                          const std::string& name) {
  auto* n = g->add_node();
  n->set_op_type(op);
  n->set_name(name);
  n->add_input(in);
  n->add_output(out);
  return n;
}

// x -> Relu -> <middle> -> Sigmoid -> Neg -> y, float [2,8].
onnx::ModelProto make_model(const std::string& middle) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(17);
  auto* g = m.mutable_graph();
  g->set_name("report");
  add_io(g->add_input(), "x");
  add_io(g->add_output(), "y");
  add_node(g, "Relu", "x", "a", "relu");
  add_node(g, middle, "a", "b", "middle");
  add_node(g, "Sigmoid", "b", "c", "sigmoid");
  add_node(g, "Neg", "c", "y", "neg");
  return m;
}

fs::path write_model(const fs::path& dir, const std::string& name, const onnx::ModelProto& m) {
  fs::path p = dir / name;
  std::ofstream(p, std::ios::binary) << m.SerializeAsString();
  return p;
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The JSON document in the output (stderr lines, if any, come after it).
nlohmann::json json_of(const std::string& out) {
  size_t a = out.find('{'), b = out.rfind('}');
  if (a == std::string::npos || b == std::string::npos || b < a) return nullptr;
  return nlohmann::json::parse(out.substr(a, b - a + 1), nullptr, false);
}

class InspectReport : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = kiln::testing::scratch_dir("inspect"); }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(InspectReport, SupportedModelIsReportedThenBuilt) {
  fs::path model = write_model(dir_, "ok.onnx", make_model("Tanh"));
  auto r = run_cli({"inspect", model.string()});
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "Support: 4 nodes: all supported")) << r.output;
  EXPECT_TRUE(has(r.output, "0-3    4      supported")) << r.output;
  EXPECT_FALSE(has(r.output, "Unsupported nodes")) << r.output;
  // As before: the engine built in memory.
  EXPECT_TRUE(has(r.output, "(built in memory from ONNX)")) << r.output;
  EXPECT_TRUE(has(r.output, "Layers:")) << r.output;

  auto only = run_cli({"inspect", model.string(), "--report-only"});
  EXPECT_EQ(only.code, 0) << only.output;
  EXPECT_TRUE(has(only.output, "all supported")) << only.output;
  EXPECT_FALSE(has(only.output, "Layers:")) << only.output;

  auto js = run_cli({"inspect", model.string(), "--json"});
  EXPECT_EQ(js.code, 0) << js.output;
  auto j = json_of(js.output);
  ASSERT_TRUE(j.is_object()) << js.output;
  EXPECT_EQ(j["supported"], true);
  EXPECT_EQ(j["num_nodes"], 4);
  EXPECT_EQ(j["unsupported"], nlohmann::json::array());
  EXPECT_EQ(j["subgraphs"].size(), 1u);
  EXPECT_TRUE(j["engine"].is_object()) << js.output;
  EXPECT_TRUE(j["engine"].contains("layers")) << js.output;

  auto jo = run_cli({"inspect", model.string(), "--json", "--report-only"});
  EXPECT_EQ(jo.code, 0) << jo.output;
  auto j2 = json_of(jo.output);
  ASSERT_TRUE(j2.is_object()) << jo.output;
  EXPECT_FALSE(j2.contains("engine"));
  ASSERT_EQ(j2["nodes"].size(), 4u);
  EXPECT_EQ(j2["nodes"][1]["name"], "middle");
  EXPECT_EQ(j2["nodes"][1]["op_type"], "Tanh");
  EXPECT_EQ(j2["nodes"][1]["domain"], "ai.onnx");
  EXPECT_EQ(j2["nodes"][1]["opset"], 17);
  EXPECT_EQ(j2["nodes"][1]["supported"], true);
}

TEST_F(InspectReport, UnsupportedNodeStopsBeforeTheBuild) {
  fs::path model = write_model(dir_, "bad.onnx", make_model("FancyOp"));
  auto r = run_cli({"inspect", model.string()});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "Support: 4 nodes: 1 of 4 unsupported")) << r.output;
  EXPECT_TRUE(has(r.output, "Unsupported nodes")) << r.output;
  EXPECT_TRUE(has(r.output, "#  name    op       domain   opset  reason")) << r.output;
  EXPECT_TRUE(has(r.output, "1  middle  FancyOp  ai.onnx  17     operator FancyOp (domain ai.onnx, opset 17) is not"))
      << r.output;
  EXPECT_TRUE(has(r.output, "Subgraphs: 3 runs")) << r.output;
  EXPECT_TRUE(has(r.output, "1      1      unsupported")) << r.output;
  EXPECT_TRUE(has(r.output, "2-3    2      supported")) << r.output;
  EXPECT_TRUE(has(r.output, "kiln: error: ")) << r.output;
  EXPECT_TRUE(has(r.output, "'" + model.string() + "' has 1 unsupported node; nothing was built")) << r.output;
  EXPECT_FALSE(has(r.output, "Layers:")) << r.output;

  auto js = run_cli({"inspect", model.string(), "--json"});
  EXPECT_EQ(js.code, 1) << js.output;
  auto j = json_of(js.output);
  ASSERT_TRUE(j.is_object()) << js.output;
  EXPECT_EQ(j["supported"], false);
  EXPECT_EQ(j["num_unsupported"], 1);
  EXPECT_EQ(j["unsupported"], nlohmann::json::array({1}));
  EXPECT_FALSE(j.contains("engine"));
  ASSERT_EQ(j["subgraphs"].size(), 3u);
  EXPECT_EQ(j["subgraphs"][0]["nodes"], nlohmann::json::array({0}));
  EXPECT_EQ(j["subgraphs"][0]["supported"], true);
  EXPECT_EQ(j["subgraphs"][1]["nodes"], nlohmann::json::array({1}));
  EXPECT_EQ(j["subgraphs"][1]["supported"], false);
  EXPECT_EQ(j["subgraphs"][2]["nodes"], nlohmann::json::array({2, 3}));
  EXPECT_TRUE(has(j["nodes"][1]["reason"].get<std::string>(), "FancyOp")) << js.output;
}

TEST_F(InspectReport, UnsupportedAttributeValue) {
  onnx::ModelProto m = make_model("Cast");
  auto* to = m.mutable_graph()->mutable_node(1)->add_attribute();
  to->set_name("to");
  to->set_type(onnx::AttributeProto::INT);
  to->set_i(onnx::TensorProto::STRING);
  fs::path model = write_model(dir_, "cast.onnx", m);
  auto r = run_cli({"inspect", model.string(), "--report-only"});
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "1  middle  Cast  ai.onnx  17     target dtype string is not supported by Cast"))
      << r.output;
}

TEST_F(InspectReport, CudaFallbackTable) {
  // The report needs no GPU.
  onnx::ModelProto m = make_model("Tanh");
  fs::path model = write_model(dir_, "ok.onnx", m);
  auto r = run_cli({"inspect", model.string(), "--report-only", "--device", "cuda"});
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "CPU fallback in a CUDA engine: ")) << r.output;
  auto cpu = run_cli({"inspect", model.string(), "--report-only"});
  EXPECT_FALSE(has(cpu.output, "CPU fallback")) << cpu.output;
  auto js = run_cli({"inspect", model.string(), "--report-only", "--json"});
  auto j = json_of(js.output);
  ASSERT_TRUE(j.is_object()) << js.output;
  EXPECT_TRUE(j["cpu_fallback_on_cuda"].is_array());
  EXPECT_TRUE(j["nodes"][0].contains("cuda"));
  EXPECT_TRUE(j["nodes"][0].contains("cuda_reason"));
}

TEST_F(InspectReport, EngineFilesAreShownAsBefore) {
  fs::path model = write_model(dir_, "ok.onnx", make_model("Tanh"));
  fs::path engine = dir_ / "ok.engine";
  auto b = run_cli({"build", model.string(), "-o", engine.string()});
  ASSERT_EQ(b.code, 0) << b.output;
  auto r = run_cli({"inspect", engine.string()});
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_FALSE(has(r.output, "Support:")) << r.output;
  EXPECT_TRUE(has(r.output, "Layers:")) << r.output;
  auto js = run_cli({"inspect", engine.string(), "--json"});
  EXPECT_EQ(js.code, 0) << js.output;
  auto j = json_of(js.output);
  ASSERT_TRUE(j.is_object()) << js.output;
  EXPECT_FALSE(j.contains("supported"));
  ASSERT_TRUE(j.contains("layers") && j["layers"].is_array() && !j["layers"].empty()) << js.output;
  // A CPU engine has no tactics: every layer says so (-1, no words).
  for (const auto& l : j["layers"]) {
    EXPECT_EQ(l.value("tactic", int64_t{0}), -1) << l.dump();
    EXPECT_EQ(l.value("tactic_desc", std::string("?")), "") << l.dump();
  }
  EXPECT_TRUE(has(r.output, "tactic")) << r.output;
  EXPECT_FALSE(has(r.output, "(+ compiled plan)")) << r.output;
  EXPECT_FALSE(has(r.output, "kept_plan_bytes")) << r.output;
  kiln::testing::expect_cli_error(run_cli({"inspect", engine.string(), "--report-only"}), "--report-only");

  // A layer whose engine carries a compiled plan (kiln.kernel_state) is marked, and its bytes counted.
  std::ifstream in(engine, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto m = kiln::plan::deserialize_engine(bytes.data(), bytes.size());
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  const std::string plan_text = "kiln-cudnn-plan 1 2 3\n{}";
  m->graph->nodes().front()->attrs.set(kiln::cuda::kKernelStateAttr, kiln::ir::Attribute::from_string(plan_text));
  const auto with_plan = kiln::plan::serialize_engine(*m);
  const fs::path kept = dir_ / "kept.engine";
  std::ofstream(kept, std::ios::binary)
      .write(reinterpret_cast<const char*>(with_plan.data()), static_cast<std::streamsize>(with_plan.size()));
  auto k = run_cli({"inspect", kept.string()});
  EXPECT_EQ(k.code, 0) << k.output;
  EXPECT_TRUE(has(k.output, "(+ compiled plan)")) << k.output;
  EXPECT_TRUE(has(k.output, "kept_plan_bytes: " + std::to_string(plan_text.size()))) << k.output;
}

}  // namespace

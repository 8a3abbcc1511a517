// fuse_matmul_activation: golden graphs (which activations fuse on which engines)
// and numerics against the unfused graph; MatMulBias's activations on every kernel.
#include <gtest/gtest.h>

#include <random>

#include "harness/op_harness.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {
namespace {

using testing::context_for;
using testing::fused_from;
using testing::op_types;
using testing::run_graph;

enum class Act { kRelu, kGeluTanh, kGeluErf, kMsGelu, kSigmoid };

// x[3, 5, 8] -> MatMulBias(W[8, 6], b[6]) -> act -> y; `also_output`: z is a graph output too.
void make(ir::Graph& g, Act act, bool also_output, std::mt19937& rng) {
  g.opset_imports[""] = 20;
  g.opset_imports["kiln"] = 1;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{3, 5, 8}).value();
  g.inputs.push_back(x);
  ir::Value* w = g.add_constant("w", test::random_tensor(DataType::kFloat32, {8, 6}, rng));
  ir::Value* b = g.add_constant("b", test::random_tensor(DataType::kFloat32, {6}, rng));
  ir::Value* z = g.add_value("z").value();
  ir::Value* y = g.add_value("y").value();
  ir::Node* mm = g.add_node("MatMulBias", {x, w, b}, {z}, "mm");
  mm->domain = "kiln";
  mm->opset = 1;
  const char* op = act == Act::kRelu ? "Relu" : act == Act::kSigmoid ? "Sigmoid" : "Gelu";
  ir::Node* a = g.add_node(op, {z}, {y}, "act");
  a->opset = 20;
  if (act == Act::kGeluTanh) a->attrs.set("approximate", ir::Attribute::from_string("tanh"));
  if (act == Act::kMsGelu) {
    a->domain = "com.microsoft";
    a->opset = 1;
    g.opset_imports["com.microsoft"] = 1;
  }
  g.outputs.push_back(y);
  if (also_output) g.outputs.push_back(z);
}

struct Want {
  Act act;
  bool cuda, fp16, also_output;
  const char* epilogue;  // "" = not fused
};

TEST(FuseMatMulActivation, FusesWhatTheEpilogueComputes) {
  std::mt19937 rng(3);
  const Want cases[] = {
      {Act::kRelu, false, false, false, "Relu"},
      {Act::kRelu, true, true, false, "Relu"},
      {Act::kGeluTanh, false, false, false, "GeluTanh"},
      {Act::kGeluErf, false, false, false, ""},
      {Act::kGeluErf, true, false, false, ""},
      {Act::kGeluErf, true, true, false, "GeluTanh"},
      {Act::kMsGelu, true, true, false, "GeluTanh"},
      {Act::kSigmoid, true, true, false, ""},
      {Act::kRelu, true, true, true, ""},
  };
  for (const Want& w : cases) {
    SCOPED_TRACE(std::to_string(static_cast<int>(w.act)) + " cuda " + std::to_string(w.cuda) + " fp16 " +
                 std::to_string(w.fp16) + " output " + std::to_string(w.also_output));
    ir::Graph g;
    make(g, w.act, w.also_output, rng);
    auto before = g.clone();
    BuilderConfig cfg;
    if (w.cuda) cfg.set_device(DeviceType::kCUDA);
    if (w.fp16) cfg.set_flag(BuilderFlag::kFP16);
    PassContext ctx = context_for(g, cfg);
    testing::run_pass(g, fuse_matmul_activation, ctx);
    const std::string epi = w.epilogue;
    if (epi.empty()) {
      EXPECT_EQ(g.nodes().size(), 2u) << ir::dump(g);
      continue;
    }
    ASSERT_EQ(op_types(g), (std::vector<std::string>{"MatMulBias"})) << ir::dump(g);
    const ir::Node& f = *g.nodes()[0];
    EXPECT_EQ(f.attrs.get_string("activation", ""), epi);
    EXPECT_EQ(f.outputs[0]->name, "y");
    EXPECT_EQ(fused_from(f), (std::vector<std::string>{"mm", "act"}));
    EXPECT_EQ(ctx.stats["gelu_erf_as_tanh"], w.act == Act::kGeluErf || w.act == Act::kMsGelu ? 1 : 0);
    // Same values: exactly for Relu and tanh GELU, within the tanh-vs-erf bound for the exact GELU.
    Tensor xin = test::random_tensor(DataType::kFloat32, {3, 5, 8}, rng, -3, 3);
    auto a = run_graph(*before, {{"x", xin}});
    auto o = run_graph(g, {{"x", xin}});
    const double tol = epi == "GeluTanh" && w.act != Act::kGeluTanh ? 5e-4 : 1e-6;
    EXPECT_TRUE(test::tensors_close(o.at("y"), a.at("y"), 0, tol));
  }
}

TEST(FuseMatMulActivation, LeavesAnOutputReadBySubgraphBodiesAlone) {
  // A Loop body reads z by name: the Relu must not take over z's producer.
  std::mt19937 rng(5);
  ir::Graph g;
  make(g, Act::kRelu, false, rng);
  ir::Value* z = g.find_value("z");
  ir::Value* last = testing::add_loop_reading(g, z, g.find_value("y"));
  g.outputs.push_back(last);
  auto before = g.clone();
  BuilderConfig cfg;
  cfg.set_device(DeviceType::kCUDA);
  PassContext ctx = context_for(g, cfg);
  testing::run_pass(g, fuse_matmul_activation, ctx);
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"MatMulBias", "Relu", "Loop"})) << ir::dump(g);
  EXPECT_EQ(z->producer->op_type, "MatMulBias");
  EXPECT_TRUE(g.nodes()[0]->attrs.get_string("activation", "").empty());
  Tensor xin = test::random_tensor(DataType::kFloat32, {3, 5, 8}, rng, -3, 3);
  auto a = testing::execute(*before, {{"x", xin}});
  auto o = testing::execute(g, {{"x", xin}});
  for (const char* name : {"y", last->name.c_str()}) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(o.count(name));
    EXPECT_TRUE(test::tensors_close(o.at(name), a.at(name), 0, 1e-6));
  }
}

TEST(FuseMatMulActivation, UnknownActivationIsAnError) {
  test::OpCase c("MatMulBias", 1, "kiln");
  c.attr("activation", ir::Attribute::from_string("Swish"));
  c.input(DataType::kFloat32, {2, 4}).input(DataType::kFloat32, {4, 3}).input(DataType::kFloat32, {3});
  auto out = c.run();
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("unknown activation 'Swish'"), std::string::npos) << out.status().to_string();
}

TEST(MatMulBias, ActivationKernelsMatchReference) {
  // One cuBLASLt call (epilogue) and batched broadcasts (separate bias+activation kernel).
  for (const char* act : {"Relu", "GeluTanh"})
    for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16})
      for (Dims a : {Dims{7, 12}, Dims{2, 5, 12}}) {
        SCOPED_TRACE(std::string(act) + " " + dtype_name(dt) + " " + dims_to_string(a));
        test::OpCase c("MatMulBias", 1, "kiln");
        c.attr("activation", ir::Attribute::from_string(act));
        c.input(dt, a, -2, 2).input(dt, {12, 9}).input(dt, {9});
        const double tol = dt == DataType::kFloat32 ? 1e-3 : 2e-2;
        EXPECT_GE(c.expect_all_kernels_match(tol, tol), test::gpu_kernels());
      }
  // MatMul with a broadcast batched B: several cuBLASLt calls, then the bias+activation kernel.
  for (DataType dt : {DataType::kFloat32, DataType::kFloat16}) {
    test::OpCase c("MatMulBias", 1, "kiln");
    c.attr("activation", ir::Attribute::from_string("GeluTanh"));
    c.input(dt, {2, 3, 5, 12}, -2, 2).input(dt, {3, 12, 9}).input(dt, {9});
    EXPECT_GE(c.expect_all_kernels_match(dt == DataType::kFloat32 ? 1e-3 : 2e-2, 2e-2), test::gpu_kernels());
  }
}

}  // namespace
}  // namespace kiln::passes

// fuse_where_cast: Where(Cast(m, bool) [-> Reshape], x, z) becomes WhereNonzero reading m
// (golden graphs, same outputs on the reference kernels); float casts, CPU engines and
// casts read elsewhere stay.
#include <gtest/gtest.h>

#include <random>

#include "harness/op_harness.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {
namespace {

using testing::fused_from;
using testing::op_types;
using testing::run_graph;

struct Net {
  ir::Graph g;
  ir::Value* cast_out = nullptr;
};

// m [2, 6] (dtype `mt`) -> Cast(bool) [-> Reshape [2, 1, 1, 6]] -> Where(., 0, -1e4) -> y.
// `share`: the bool tensor is a graph output too.
void build(Net& n, DataType mt, bool reshape, bool share = false) {
  ir::Graph& g = n.g;
  g.opset_imports[""] = 17;
  ir::Value* m = g.add_value("m", mt, Shape{2, 6}).value();
  g.inputs.push_back(m);
  n.cast_out = g.add_value("b", DataType::kBool, Shape{2, 6}).value();
  ir::Node* cast = g.add_node("Cast", {m}, {n.cast_out}, "to_bool");
  cast->opset = 13;
  cast->attrs.set("to", ir::Attribute::from_int(static_cast<int64_t>(DataType::kBool)));
  ir::Value* cond = n.cast_out;
  Shape out{2, 6};
  if (reshape) {
    out = Shape{2, 1, 1, 6};
    ir::Value* to = g.add_constant("to", Tensor::from_vector<int64_t>(DataType::kInt64, {4}, {2, 1, 1, 6}));
    cond = g.add_value("b4", DataType::kBool, out).value();
    g.add_node("Reshape", {n.cast_out, to}, {cond}, "view")->opset = 14;
  }
  ir::Value* zero = g.add_constant("zero", Tensor::from_vector<float>(DataType::kFloat32, {}, {0.f}));
  ir::Value* low = g.add_constant("low", Tensor::from_vector<float>(DataType::kFloat32, {}, {-1e4f}));
  ir::Value* y = g.add_value("y", DataType::kFloat32, out).value();
  g.add_node("Where", {cond, zero, low}, {y}, "select")->opset = 16;
  g.outputs.push_back(y);
  if (share) g.outputs.push_back(n.cast_out);
}

Status run(ir::Graph& g, DeviceType device = DeviceType::kCUDA) {
  return testing::run_for_device(fuse_where_cast, g, device);
}

TEST(FuseWhereCast, MaskCastAndWhereBecomeOneNodeThroughAView) {
  for (DataType mt : {DataType::kInt64, DataType::kInt32, DataType::kBool})
    for (bool reshape : {false, true}) {
      SCOPED_TRACE(std::string(dtype_name(mt)) + (reshape ? " reshape" : ""));
      Net n;
      build(n, mt, reshape);
      std::unique_ptr<ir::Graph> before(n.g.clone());
      ASSERT_TRUE(run(n.g).ok());
      ASSERT_TRUE(ir::verify(n.g).ok());
      const std::vector<std::string> want =
          reshape ? std::vector<std::string>{"Reshape", "WhereNonzero"} : std::vector<std::string>{"WhereNonzero"};
      EXPECT_EQ(op_types(n.g), want);
      const ir::Node& w = *n.g.nodes().back();
      EXPECT_EQ(w.domain, "kiln");
      EXPECT_EQ(fused_from(w), (std::vector<std::string>{"to_bool", "select"}));
      const ir::Value* cond = w.inputs[0];
      EXPECT_EQ(cond->dtype, mt);
      EXPECT_EQ(reshape ? cond->producer->inputs[0]->name : cond->name, "m");
      std::mt19937 rng(3);
      std::map<std::string, Tensor> in = {{"m", test::random_tensor(mt, {2, 6}, rng, -2, 2)}};
      testing::expect_outputs_close(*before, run_graph(n.g, in), run_graph(*before, in), 0, 0);
    }
}

TEST(FuseWhereCast, LeavesFloatCastsCpuEnginesAndSharedCasts) {
  const std::vector<std::string> unfused = {"Cast", "Where"};
  Net f, cpu, shared;
  build(f, DataType::kFloat32, false);
  ASSERT_TRUE(run(f.g).ok());
  EXPECT_EQ(op_types(f.g), unfused);
  build(cpu, DataType::kInt64, false);
  ASSERT_TRUE(run(cpu.g, DeviceType::kCPU).ok());
  EXPECT_EQ(op_types(cpu.g), unfused);
  build(shared, DataType::kInt64, false, /*share=*/true);
  ASSERT_TRUE(run(shared.g).ok());
  EXPECT_EQ(op_types(shared.g), unfused);
}

}  // namespace
}  // namespace kiln::passes

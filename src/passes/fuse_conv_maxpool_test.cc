// fuse_conv_maxpool: a channels-last 16-channel stem FusedConv read only by a 3x3 / 2 MaxPool
// with pads 1 becomes one FusedConv with kiln.max_pool (golden graphs, the same outputs on the
// reference kernels); other pools, shared conv outputs, wide rows, FP32 and CPU engines stay.
#include <gtest/gtest.h>

#include <random>

#include "harness/op_harness.h"
#include "ops/conv/conv_internal.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {
namespace {

using testing::fused_from;
using testing::op_types;
using testing::run_graph;

struct Stem {
  Dims x{2, 9, 19, 16};  // NHWC
  int64_t k = 4;
  DataType dt = DataType::kFloat16;
  const char* act = "Relu";
  std::vector<int64_t> pool_kernel{3, 3};
  bool share = false;  // the conv's output is a graph output too
};

// x -> FusedConv[nhwc](w [64, k, k, 16], b; act) -> y -> MaxPool[nhwc](pool_kernel, strides 2, pads 1) -> p.
void build(ir::Graph& g, const Stem& s) {
  g.opset_imports[""] = 17;
  g.opset_imports["com.microsoft"] = 1;
  std::mt19937 rng(7);
  ir::Value* x = g.add_value("x", s.dt, shape_from_dims(s.x)).value();
  g.inputs.push_back(x);
  ir::Value* w = g.add_constant("w", test::random_tensor(s.dt, {64, s.k, s.k, 16}, rng, -0.3, 0.3));
  ir::Value* b = g.add_constant("b", test::random_tensor(s.dt, {64}, rng, -1, 1));
  const int64_t oh = s.x[1] - s.k + 1, ow = s.x[2] - s.k + 1;
  ir::Value* y = g.add_value("y", s.dt, Shape{s.x[0], oh, ow, 64}).value();
  ir::Node* conv = g.add_node("FusedConv", {x, w, b}, {y}, "stem");
  conv->domain = "com.microsoft";
  conv->opset = 1;
  conv->attrs.set("kiln.nhwc", ir::Attribute::from_int(1));
  conv->attrs.set("kernel_shape", ir::Attribute::from_ints({s.k, s.k}));
  conv->attrs.set("strides", ir::Attribute::from_ints({1, 1}));
  conv->attrs.set("pads", ir::Attribute::from_ints({0, 0, 0, 0}));
  if (*s.act) conv->attrs.set("activation", ir::Attribute::from_string(s.act));
  const int64_t pk = s.pool_kernel[0];
  ir::Value* p =
      g.add_value("p", s.dt, Shape{s.x[0], (oh + 2 - pk) / 2 + 1, (ow + 2 - s.pool_kernel[1]) / 2 + 1, 64}).value();
  ir::Node* pool = g.add_node("MaxPool", {y}, {p}, "pool");
  pool->opset = 12;
  pool->attrs.set("kiln.nhwc", ir::Attribute::from_int(1));
  pool->attrs.set("kernel_shape", ir::Attribute::from_ints(s.pool_kernel));
  pool->attrs.set("strides", ir::Attribute::from_ints({2, 2}));
  pool->attrs.set("pads", ir::Attribute::from_ints({1, 1, 1, 1}));
  g.outputs.push_back(p);
  if (s.share) g.outputs.push_back(y);
}

Status run(ir::Graph& g, DeviceType device = DeviceType::kCUDA) {
  return testing::run_for_device(fuse_conv_maxpool, g, device);
}

TEST(FuseConvMaxPool, StemConvAndPoolBecomeOneNode) {
  std::vector<Stem> cases(3);
  cases[1].x = {1, 10, 131, 16};  // a 128-pixel output row, odd pooled rows
  cases[1].act = "";
  cases[2].x = {3, 7, 12, 16};
  cases[2].k = 2;
  cases[2].dt = DataType::kBFloat16;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    ir::Graph g;
    build(g, cases[i]);
    std::unique_ptr<ir::Graph> before(g.clone());
    ASSERT_TRUE(run(g).ok());
    ASSERT_TRUE(ir::verify(g).ok());
    EXPECT_EQ(op_types(g), std::vector<std::string>{"FusedConv"});
    const ir::Node& f = *g.nodes().back();
    EXPECT_EQ(f.attrs.get_ints(ops::conv::kMaxPoolAttr), (std::vector<int64_t>{3, 3, 2, 2, 1, 1, 1, 1}));
    EXPECT_EQ(fused_from(f), (std::vector<std::string>{"stem", "pool"}));
    EXPECT_EQ(f.outputs[0]->name, "p");
    std::mt19937 rng(3);
    std::map<std::string, Tensor> in = {{"x", test::random_tensor(cases[i].dt, cases[i].x, rng, -1, 1)}};
    // The same fp16 / bf16 conv values, pooled: equal.
    testing::expect_outputs_close(*before, run_graph(g, in), run_graph(*before, in), 0, 0);
  }
}

TEST(FuseConvMaxPool, LeavesOtherPoolsSharedOutputsWideRowsFp32AndCpuEngines) {
  const std::vector<std::string> unfused = {"FusedConv", "MaxPool"};
  std::vector<Stem> cases(5);
  cases[0].pool_kernel = {2, 2};  // not ResNet's pool
  cases[1].share = true;          // the conv's output is read elsewhere
  cases[2].x = {1, 9, 136, 16};   // 133-pixel output rows
  cases[3].dt = DataType::kFloat32;
  cases[4].act = "Silu";
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    ir::Graph g;
    build(g, cases[i]);
    ASSERT_TRUE(run(g).ok());
    EXPECT_EQ(op_types(g), unfused);
  }
  ir::Graph cpu;
  build(cpu, Stem{});
  ASSERT_TRUE(run(cpu, DeviceType::kCPU).ok());
  EXPECT_EQ(op_types(cpu), unfused);
}

// kiln.max_pool's validation names the attribute.
TEST(FuseConvMaxPool, BadPoolAttributeIsAnError) {
  ir::Attributes a;
  a.set(ops::conv::kMaxPoolAttr, ir::Attribute::from_ints({3, 3, 2}));
  auto r = ops::conv::fused_max_pool(a);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("kiln.max_pool"), std::string::npos);
  a.set(ops::conv::kMaxPoolAttr, ir::Attribute::from_ints({3, 3, 2, 2, 3, 1, 1, 1}));
  EXPECT_FALSE(ops::conv::fused_max_pool(a).ok());  // a pad as large as the kernel
}

}  // namespace
}  // namespace kiln::passes

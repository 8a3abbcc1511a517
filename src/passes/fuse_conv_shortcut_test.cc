// fuse_conv_shortcut: a bottleneck block's channels-last 1x1 downsample conv read only as the Z of
// its last 1x1 FusedConv becomes that FusedConv's kiln.shortcut_strides inputs (golden graphs, the
// same outputs on the reference kernels); shared or output downsamples, other kernels and strides,
// unaligned or compute-bound channel counts (ResNet-50's layer3), oversized tensors, FP32 and CPU
// engines stay.
// nhwc_layout turns an NCHW FusedConv with a shortcut channels-last with it.
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

struct Block {
  Dims x{2, 6, 5, 64};  // the block's input, NHWC: [N, H2, W2, C2]
  int64_t c1 = 64, m = 256, s = 1, kd = 1;
  DataType dt = DataType::kFloat16;
  const char* act = "Relu";
  bool fused_down = false;  // the downsample is a FusedConv without activation
  bool down_bias = true;
  bool second_reader = false;  // r is also read by a Relu (a graph output)
  bool r_output = false;       // r is a graph output
  int64_t oh() const { return (x[1] - kd) / s + 1; }
  int64_t ow() const { return (x[2] - kd) / s + 1; }
  Dims h() const { return {x[0], oh(), ow(), c1}; }
};

void set_conv_attrs(ir::Node* n, int64_t k, int64_t s) {
  n->attrs.set("kiln.nhwc", ir::Attribute::from_int(1));
  n->attrs.set("kernel_shape", ir::Attribute::from_ints({k, k}));
  n->attrs.set("strides", ir::Attribute::from_ints({s, s}));
  n->attrs.set("pads", ir::Attribute::from_ints({0, 0, 0, 0}));
}

// r = Conv[nhwc](x, wd [M, kd, kd, C2], bd; strides s); y = FusedConv[nhwc](h, w3 [M, 1, 1, C1], b3, r; act).
void build(ir::Graph& g, const Block& b) {
  g.opset_imports[""] = 17;
  g.opset_imports["com.microsoft"] = 1;
  std::mt19937 rng(5);
  ir::Value* x = g.add_value("x", b.dt, shape_from_dims(b.x)).value();
  ir::Value* h = g.add_value("h", b.dt, shape_from_dims(b.h())).value();
  g.inputs = {x, h};
  const Dims yd{b.x[0], b.oh(), b.ow(), b.m};
  ir::Value* wd = g.add_constant("wd", test::random_tensor(b.dt, {b.m, b.kd, b.kd, b.x[3]}, rng, -0.2, 0.2));
  std::vector<ir::Value*> down_in = {x, wd};
  if (b.down_bias) down_in.push_back(g.add_constant("bd", test::random_tensor(b.dt, {b.m}, rng, -1, 1)));
  ir::Value* r = g.add_value("r", b.dt, shape_from_dims(yd)).value();
  ir::Node* down = g.add_node(b.fused_down ? "FusedConv" : "Conv", down_in, {r}, "down");
  down->domain = b.fused_down ? "com.microsoft" : "";
  down->opset = b.fused_down ? 1 : 17;
  set_conv_attrs(down, b.kd, b.s);
  ir::Value* w3 = g.add_constant("w3", test::random_tensor(b.dt, {b.m, 1, 1, b.c1}, rng, -0.2, 0.2));
  ir::Value* b3 = g.add_constant("b3", test::random_tensor(b.dt, {b.m}, rng, -1, 1));
  ir::Value* y = g.add_value("y", b.dt, shape_from_dims(yd)).value();
  ir::Node* block = g.add_node("FusedConv", {h, w3, b3, r}, {y}, "block");
  block->domain = "com.microsoft";
  block->opset = 1;
  set_conv_attrs(block, 1, 1);
  if (*b.act) block->attrs.set("activation", ir::Attribute::from_string(b.act));
  g.outputs.push_back(y);
  if (b.second_reader) {
    ir::Value* r2 = g.add_value("r2", b.dt, shape_from_dims(yd)).value();
    g.add_node("Relu", {r}, {r2}, "other")->opset = 14;
    g.outputs.push_back(r2);
  }
  if (b.r_output) g.outputs.push_back(r);
}

Status run(ir::Graph& g, DeviceType device, PassContext* out = nullptr) {
  BuilderConfig cfg;
  cfg.set_device(device);
  PassContext ctx = testing::context_for(g, cfg);
  Status s = fuse_conv_shortcut(g, ctx);
  if (out) out->stats = ctx.stats;
  return s;
}

std::vector<std::string> input_names(const ir::Node& n) {
  std::vector<std::string> r;
  for (const ir::Value* v : n.inputs) r.push_back(v ? v->name : "");
  return r;
}

TEST(FuseConvShortcut, DownsampleBecomesTheBlockConvsShortcut) {
  std::vector<Block> cases(6);
  cases[1].s = 2;  // ResNet-50 layer2's shape of block: 128 + 256 -> 512, stride 2
  cases[1].x = {1, 7, 6, 256};
  cases[1].c1 = 128;
  cases[1].m = 512;
  cases[2].s = 2;  // even input, bf16, no activation
  cases[2].x = {2, 4, 6, 128};
  cases[2].dt = DataType::kBFloat16;
  cases[2].act = "";
  cases[3].down_bias = false;  // input 6 absent
  cases[4].fused_down = true;  // the downsample as a FusedConv without activation
  cases[4].s = 2;
  cases[5].x = {1, 3, 3, 192};  // unequal C1 and C2, 64 + 192 -> 128
  cases[5].m = 128;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    const Block& b = cases[i];
    ir::Graph g;
    build(g, b);
    std::unique_ptr<ir::Graph> before(g.clone());
    PassContext stats;
    ASSERT_TRUE(run(g, DeviceType::kCUDA, &stats).ok());
    Status v = ir::verify(g);
    ASSERT_TRUE(v.ok()) << v.to_string();
    EXPECT_EQ(op_types(g), std::vector<std::string>{"FusedConv"});
    EXPECT_EQ(stats.stats["fused_conv_shortcut"], 1);
    const ir::Node& f = *g.nodes().back();
    std::vector<std::string> want = {"h", "w3", "b3", "", "x", "wd"};
    if (b.down_bias) want.push_back("bd");
    EXPECT_EQ(input_names(f), want);
    EXPECT_EQ(f.attrs.get_ints(ops::conv::kShortcutAttr), (std::vector<int64_t>{b.s, b.s}));
    EXPECT_EQ(f.attrs.get_string("activation", ""), b.act);
    EXPECT_EQ(fused_from(f), (std::vector<std::string>{"down", "block"}));
    EXPECT_EQ(f.outputs[0]->name, "y");
    EXPECT_EQ(g.find_value("r"), nullptr);
    // The fused node's inference (through the NHWC adapter) agrees with the graph's shapes.
    PassContext ctx = testing::context_for(g);
    Status inferred = infer_shapes(g, ctx);
    ASSERT_TRUE(inferred.ok()) << inferred.to_string();
    EXPECT_EQ(shape_to_dims(*g.find_value("y")->shape), (Dims{b.x[0], b.oh(), b.ow(), b.m}));
    std::mt19937 rng(3);
    std::map<std::string, Tensor> in = {{"x", test::random_tensor(b.dt, b.x, rng, -1, 1)},
                                        {"h", test::random_tensor(b.dt, b.h(), rng, -1, 1)}};
    // The same fp16 / bf16 conv values, added in the same order: equal.
    testing::expect_outputs_close(*before, run_graph(g, in), run_graph(*before, in), 0, 0);
  }
}

TEST(FuseConvShortcut, LeavesSharedOrOutputDownsamplesOtherConvsFp32AndCpuEngines) {
  std::vector<Block> cases(9);
  cases[0].second_reader = true;  // r has a second reader
  cases[1].r_output = true;       // r is a graph output
  cases[2].kd = 3;                // a 3x3 downsample
  cases[3].s = 3;                 // stride 3
  cases[3].x = {1, 7, 7, 64};
  cases[4].c1 = 96;  // C1 not a multiple of 64
  cases[5].dt = DataType::kFloat32;
  cases[6].x = {1, 2, 2, 512};  // ResNet-50 layer3: 256 + 512 -> 1024 is compute bound
  cases[6].c1 = 256;
  cases[6].m = 1024;
  cases[6].s = 2;
  cases[7].act = "Silu";             // an activation the kernel lacks
  cases[8].x = {128, 256, 256, 64};  // y has 2^31 elements: more than the kernel takes
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    ir::Graph g;
    build(g, cases[i]);
    const std::vector<std::string> ops = op_types(g);
    PassContext stats;
    ASSERT_TRUE(run(g, DeviceType::kCUDA, &stats).ok());
    EXPECT_EQ(op_types(g), ops);
    EXPECT_EQ(stats.stats.count("fused_conv_shortcut"), 0u);
  }
  ir::Graph cpu;
  build(cpu, Block{});
  ASSERT_TRUE(run(cpu, DeviceType::kCPU).ok());
  EXPECT_EQ(op_types(cpu), (std::vector<std::string>{"Conv", "FusedConv"}));
}

// An NCHW FusedConv with a shortcut goes channels-last with its X2 and W2 (and W2 keeps X2's
// channels where X's 6 channels are padded to 8): the same outputs.
TEST(FuseConvShortcut, NhwcLayoutTurnsAShortcutFusedConvChannelsLast) {
  ir::Graph g;
  g.opset_imports[""] = 17;
  g.opset_imports["com.microsoft"] = 1;
  std::mt19937 rng(8);
  const DataType dt = DataType::kFloat16;
  ir::Value* h = g.add_value("h", dt, Shape{2, 6, 3, 4}).value();
  ir::Value* x = g.add_value("x", dt, Shape{2, 16, 5, 7}).value();
  g.inputs = {h, x};
  ir::Value* w = g.add_constant("w", test::random_tensor(dt, {32, 6, 1, 1}, rng, -0.3, 0.3));
  ir::Value* b = g.add_constant("b", test::random_tensor(dt, {32}, rng));
  ir::Value* w2 = g.add_constant("w2", test::random_tensor(dt, {32, 16, 1, 1}, rng, -0.3, 0.3));
  ir::Value* b2 = g.add_constant("b2", test::random_tensor(dt, {32}, rng));
  ir::Value* y = g.add_value("y", dt, Shape{2, 32, 3, 4}).value();
  ir::Node* n = g.add_node("FusedConv", {h, w, b, nullptr, x, w2, b2}, {y}, "block");
  n->domain = "com.microsoft";
  n->opset = 1;
  n->attrs.set("activation", ir::Attribute::from_string("Relu"));
  n->attrs.set(ops::conv::kShortcutAttr, ir::Attribute::from_ints({2, 2}));
  g.outputs.push_back(y);
  std::unique_ptr<ir::Graph> before(g.clone());
  BuilderConfig cfg;
  cfg.set_device(DeviceType::kCUDA);
  cfg.set_flag(BuilderFlag::kFP16);
  PassContext ctx = testing::context_for(g, cfg);
  testing::run_pass(g, nhwc_layout, ctx);
  const ir::Node* f = nullptr;
  for (auto& node : g.nodes())
    if (node->op_type == "FusedConv") f = node.get();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->attrs.get_int("kiln.nhwc", 0), 1);
  ASSERT_EQ(f->inputs.size(), 7u);
  EXPECT_EQ(f->input(1)->initializer->dims(), (Dims{32, 1, 1, 8}));   // padded with X
  EXPECT_EQ(f->input(5)->initializer->dims(), (Dims{32, 1, 1, 16}));  // OHWI over X2's channels
  EXPECT_EQ(shape_to_dims(*f->input(4)->shape), (Dims{2, 5, 7, 16}));
  Status inferred = infer_shapes(g, ctx);
  ASSERT_TRUE(inferred.ok()) << inferred.to_string();
  std::mt19937 in_rng(4);
  std::map<std::string, Tensor> in = {{"h", test::random_tensor(dt, {2, 6, 3, 4}, in_rng)},
                                      {"x", test::random_tensor(dt, {2, 16, 5, 7}, in_rng)}};
  testing::expect_outputs_close(*before, run_graph(g, in), run_graph(*before, in), 0, 0);
}

}  // namespace
}  // namespace kiln::passes

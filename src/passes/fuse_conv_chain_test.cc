// fuse_conv_chain: a bottleneck block's last channels-last 1x1 FusedConv (with Z, a stride-1 shortcut or
// neither) takes the next block's first 1x1 conv reading its output as a second output
// (kiln.chain_activation; golden graphs, the same outputs on the reference kernels in FP16 and BF16);
// channel counts outside the chain kernel's limits, strided, padded or 3x3 next convs, a next conv
// with Z, fused max pools, stride-2 shortcuts, FP32 and CPU engines stay.
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

void set_conv_attrs(ir::Node* n, int64_t k, int64_t s, int64_t pad = 0) {
  n->attrs.set("kiln.nhwc", ir::Attribute::from_int(1));
  n->attrs.set("kernel_shape", ir::Attribute::from_ints({k, k}));
  n->attrs.set("strides", ir::Attribute::from_ints({s, s}));
  n->attrs.set("pads", ir::Attribute::from_ints({pad, pad, pad, pad}));
}

// A channels-last conv node: a com.microsoft FusedConv with `act` (nullptr: an ONNX Conv).
ir::Node* add_conv(ir::Graph& g, const std::string& name, const std::vector<ir::Value*>& in, ir::Value* out,
                   const char* act, int64_t k = 1, int64_t s = 1, int64_t pad = 0) {
  ir::Node* n = g.add_node(act ? "FusedConv" : "Conv", in, {out}, name);
  n->domain = act ? "com.microsoft" : "";
  n->opset = act ? 1 : 17;
  set_conv_attrs(n, k, s, pad);
  if (act && *act) n->attrs.set("activation", ir::Attribute::from_string(act));
  return n;
}

std::vector<std::string> input_names(const ir::Node& n) {
  std::vector<std::string> r;
  for (const ir::Value* v : n.inputs) r.push_back(v ? v->name : "");
  return r;
}

const ir::Node* node_named(const ir::Graph& g, const std::string& name) {
  for (auto& n : g.nodes())
    if (n->name == name) return n.get();
  return nullptr;
}

Status run(ir::Graph& g, DeviceType device, PassContext* out = nullptr) {
  BuilderConfig cfg;
  cfg.set_device(device);
  PassContext ctx = testing::context_for(g, cfg);
  Status s = fuse_conv_chain(g, ctx);
  if (out) out->stats = ctx.stats;
  return s;
}

// Two ResNet-50 layer1 block boundaries (C1 64, M 256), NHWC [1, 4, 3, C]:
//   y1 = FusedConv(h1, w1, b1, "", x, wd, bd; shortcut [1, 1], Relu)   block 1's last conv
//   a2 = FusedConv(y1, wc1, bc1; Relu)                                 block 2: 256 -> 64
//   t2 = FusedConv(a2, wm, bm; 3x3, pads 1, Relu)
//   y2 = FusedConv(t2, w2, bp2, y1; Relu)                              block 2's last conv, y1 as Z
//   a3 = Conv(y2, wc2, bc2)                                            layer2's first conv: 256 -> 128
// Outputs a3 and y2.
void build_two_blocks(ir::Graph& g, DataType dt) {
  g.opset_imports[""] = 17;
  g.opset_imports["com.microsoft"] = 1;
  std::mt19937 rng(11);
  const int64_t n = 1, h = 4, w = 3;
  auto act = [&](const char* name, int64_t c) { return g.add_value(name, dt, Shape{n, h, w, c}).value(); };
  auto weight = [&](const char* name, Dims d) {
    return g.add_constant(name, test::random_tensor(dt, d, rng, -0.2, 0.2));
  };
  auto bias = [&](const char* name, int64_t c) { return g.add_constant(name, test::random_tensor(dt, {c}, rng)); };
  ir::Value* h1 = act("h1", 64);
  ir::Value* x = act("x", 64);
  g.inputs = {h1, x};
  ir::Value* y1 = act("y1", 256);
  ir::Node* p1 = add_conv(
      g, "block1_conv3",
      {h1, weight("w1", {256, 1, 1, 64}), bias("b1", 256), nullptr, x, weight("wd", {256, 1, 1, 64}), bias("bd", 256)},
      y1, "Relu");
  p1->attrs.set(ops::conv::kShortcutAttr, ir::Attribute::from_ints({1, 1}));
  ir::Value* a2 = act("a2", 64);
  add_conv(g, "block2_conv1", {y1, weight("wc1", {64, 1, 1, 256}), bias("bc1", 64)}, a2, "Relu");
  ir::Value* t2 = act("t2", 64);
  add_conv(g, "block2_conv2", {a2, weight("wm", {64, 3, 3, 64}), bias("bm", 64)}, t2, "Relu", 3, 1, 1);
  ir::Value* y2 = act("y2", 256);
  add_conv(g, "block2_conv3", {t2, weight("w2", {256, 1, 1, 64}), bias("bp2", 256), y1}, y2, "Relu");
  ir::Value* a3 = act("a3", 128);
  add_conv(g, "layer2_conv1", {y2, weight("wc2", {128, 1, 1, 256}), bias("bc2", 128)}, a3, nullptr);
  g.outputs = {a3, y2};
}

TEST(FuseConvChain, NextBlocksFirstConvBecomesASecondOutput) {
  for (DataType dt : {DataType::kFloat16, DataType::kBFloat16}) {
    SCOPED_TRACE(dtype_name(dt));
    ir::Graph g;
    build_two_blocks(g, dt);
    std::unique_ptr<ir::Graph> before(g.clone());
    PassContext stats;
    ASSERT_TRUE(run(g, DeviceType::kCUDA, &stats).ok());
    Status v = ir::verify(g);
    ASSERT_TRUE(v.ok()) << v.to_string() << "\n" << ir::dump(g);
    EXPECT_EQ(op_types(g), (std::vector<std::string>{"FusedConv", "FusedConv", "FusedConv"}));
    EXPECT_EQ(stats.stats["fused_conv_chain"], 2);
    EXPECT_EQ(node_named(g, "block2_conv1"), nullptr);
    EXPECT_EQ(node_named(g, "layer2_conv1"), nullptr);

    const ir::Node* p1 = node_named(g, "block1_conv3");
    ASSERT_NE(p1, nullptr);
    EXPECT_EQ(input_names(*p1), (std::vector<std::string>{"h1", "w1", "b1", "", "x", "wd", "bd", "wc1", "bc1"}));
    EXPECT_EQ(p1->attrs.get_string(ops::conv::kChainAttr, "absent"), "Relu");
    EXPECT_EQ(p1->attrs.get_ints(ops::conv::kShortcutAttr), (std::vector<int64_t>{1, 1}));
    ASSERT_EQ(p1->outputs.size(), 2u);
    EXPECT_EQ(p1->outputs[0]->name, "y1");
    EXPECT_EQ(p1->outputs[1]->name, "a2");
    EXPECT_EQ(p1->outputs[1]->producer, p1);
    EXPECT_EQ(fused_from(*p1), (std::vector<std::string>{"block1_conv3", "block2_conv1"}));

    const ir::Node* p2 = node_named(g, "block2_conv3");
    ASSERT_NE(p2, nullptr);
    EXPECT_EQ(input_names(*p2), (std::vector<std::string>{"t2", "w2", "bp2", "y1", "", "", "", "wc2", "bc2"}));
    EXPECT_EQ(p2->attrs.get_string(ops::conv::kChainAttr, "absent"), "");  // the Conv has no activation
    EXPECT_FALSE(p2->attrs.has(ops::conv::kShortcutAttr));
    ASSERT_EQ(p2->outputs.size(), 2u);
    EXPECT_EQ(p2->outputs[0]->name, "y2");
    EXPECT_EQ(p2->outputs[1]->name, "a3");
    EXPECT_EQ(p2->outputs[1]->producer, p2);
    EXPECT_EQ(fused_from(*p2), (std::vector<std::string>{"block2_conv3", "layer2_conv1"}));

    // The fused nodes' inference (through the NHWC adapter) agrees with the graph's shapes.
    PassContext ctx = testing::context_for(g);
    Status inferred = infer_shapes(g, ctx);
    ASSERT_TRUE(inferred.ok()) << inferred.to_string();
    EXPECT_EQ(shape_to_dims(*g.find_value("a2")->shape), (Dims{1, 4, 3, 64}));
    EXPECT_EQ(shape_to_dims(*g.find_value("a3")->shape), (Dims{1, 4, 3, 128}));
    EXPECT_EQ(shape_to_dims(*g.find_value("y2")->shape), (Dims{1, 4, 3, 256}));

    std::mt19937 rng(3);
    std::map<std::string, Tensor> in = {{"h1", test::random_tensor(dt, {1, 4, 3, 64}, rng)},
                                        {"x", test::random_tensor(dt, {1, 4, 3, 64}, rng)}};
    // The same convs on the same rounded values: equal.
    testing::expect_outputs_close(*before, run_graph(g, in), run_graph(*before, in), 0, 0);
  }
}

// One boundary: y = FusedConv(h, w, b, z | "", x, wd, bd; act) [N, H, W, M], h2 = next(y, wc, bc).
struct Pair {
  Dims h{2, 3, 5, 64};  // P's input, NHWC [N, H, W, C1]
  int64_t m = 256, m2 = 64, c2 = 64;
  DataType dt = DataType::kFloat16;
  const char* act = "Relu";
  bool z = true;               // P reads a Z
  int64_t shortcut = 0;        // P's kiln.shortcut_strides (0: none)
  bool max_pool = false;       // P carries kiln.max_pool
  const char* c_act = "Relu";  // the next conv: a FusedConv with it, or (nullptr) a Conv
  bool c_bias = true, c_z = false;
  int64_t c_k = 1, c_s = 1, c_pad = 0;
  bool y_output = false;  // y is a graph output too
  int64_t ch() const { return (h[1] + 2 * c_pad - c_k) / c_s + 1; }
  int64_t cw() const { return (h[2] + 2 * c_pad - c_k) / c_s + 1; }
};

void build(ir::Graph& g, const Pair& p) {
  g.opset_imports[""] = 17;
  g.opset_imports["com.microsoft"] = 1;
  std::mt19937 rng(5);
  const DataType dt = p.dt;
  const Dims yd{p.h[0], p.h[1], p.h[2], p.m}, h2d{p.h[0], p.ch(), p.cw(), p.m2};
  ir::Value* h = g.add_value("h", dt, shape_from_dims(p.h)).value();
  g.inputs = {h};
  std::vector<ir::Value*> in = {h, g.add_constant("w", test::random_tensor(dt, {p.m, 1, 1, p.h[3]}, rng, -0.2, 0.2)),
                                g.add_constant("b", test::random_tensor(dt, {p.m}, rng))};
  if (p.z) {
    ir::Value* z = g.add_value("z", dt, shape_from_dims(yd)).value();
    g.inputs.push_back(z);
    in.push_back(z);
  }
  if (p.shortcut) {
    const int64_t s = p.shortcut;
    ir::Value* x = g.add_value("x", dt, Shape{p.h[0], (p.h[1] - 1) * s + 1, (p.h[2] - 1) * s + 1, p.c2}).value();
    g.inputs.push_back(x);
    in.resize(4);
    in.push_back(x);
    in.push_back(g.add_constant("wd", test::random_tensor(dt, {p.m, 1, 1, p.c2}, rng, -0.2, 0.2)));
    in.push_back(g.add_constant("bd", test::random_tensor(dt, {p.m}, rng)));
  }
  ir::Value* y = g.add_value("y", dt, shape_from_dims(yd)).value();
  ir::Node* pn = add_conv(g, "last", in, y, p.act);
  if (p.shortcut) pn->attrs.set(ops::conv::kShortcutAttr, ir::Attribute::from_ints({p.shortcut, p.shortcut}));
  if (p.max_pool) pn->attrs.set(ops::conv::kMaxPoolAttr, ir::Attribute::from_ints({1, 1, 1, 1, 0, 0, 0, 0}));
  std::vector<ir::Value*> cin = {
      y, g.add_constant("wc", test::random_tensor(dt, {p.m2, p.c_k, p.c_k, p.m}, rng, -0.2, 0.2))};
  if (p.c_bias) cin.push_back(g.add_constant("bc", test::random_tensor(dt, {p.m2}, rng)));
  if (p.c_z) {
    ir::Value* zc = g.add_value("zc", dt, shape_from_dims(h2d)).value();
    g.inputs.push_back(zc);
    cin.resize(3);
    cin.push_back(zc);
  }
  ir::Value* h2 = g.add_value("h2", dt, shape_from_dims(h2d)).value();
  add_conv(g, "next", cin, h2, p.c_act, p.c_k, p.c_s, p.c_pad);
  g.outputs = {h2};
  if (p.y_output) g.outputs.push_back(y);
}

// The other forms the kernel takes: no Z nor shortcut, a stride-1 shortcut (BF16), a Conv without
// bias at M2 = 128, y a graph output, y of 512 channels and of 256 past the resident weights
// (the streamed kernel): one node whose outputs equal the pair's.
TEST(FuseConvChain, FusesEachFormTheKernelTakes) {
  std::vector<Pair> cases(7);  // cases[4] keeps the defaults: Z, the next conv a FusedConv with ReLU
  cases[0].c_act = "";
  cases[0].z = false;  // neither Z nor shortcut
  cases[1].z = false;  // layer1 block 1's form: a stride-1 shortcut
  cases[1].shortcut = 1;
  cases[1].dt = DataType::kBFloat16;
  cases[1].y_output = true;
  cases[2].m2 = 128;  // layer1 -> layer2: 64 + 128, the next conv a Conv without bias
  cases[2].c_act = nullptr;
  cases[2].c_bias = false;
  cases[2].act = "";
  cases[3].h = {1, 2, 2, 128};  // C1 128 + M2 64
  cases[5].h = {1, 3, 3, 128};  // layer2's form: 128 -> 512 -> 128 (the streamed weights)
  cases[5].m = 512;
  cases[5].m2 = 128;
  cases[6].h = {1, 2, 2, 128};  // M 256 past the resident weights (C1 128 + M2 128): streamed
  cases[6].m2 = 128;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i));
    const Pair& p = cases[i];
    ir::Graph g;
    build(g, p);
    std::unique_ptr<ir::Graph> before(g.clone());
    PassContext stats;
    ASSERT_TRUE(run(g, DeviceType::kCUDA, &stats).ok());
    Status v = ir::verify(g);
    ASSERT_TRUE(v.ok()) << v.to_string();
    EXPECT_EQ(op_types(g), std::vector<std::string>{"FusedConv"});
    EXPECT_EQ(stats.stats["fused_conv_chain"], 1);
    const ir::Node& f = *g.nodes().back();
    ASSERT_EQ(f.inputs.size(), 9u);
    EXPECT_EQ(input_names(f)[7], "wc");
    EXPECT_EQ(input_names(f)[8], p.c_bias ? "bc" : "");
    EXPECT_EQ(f.attrs.get_string(ops::conv::kChainAttr, "absent"), p.c_act && *p.c_act ? p.c_act : "");
    ASSERT_EQ(f.outputs.size(), 2u);
    EXPECT_EQ(f.outputs[1]->name, "h2");
    PassContext ctx = testing::context_for(g);
    Status inferred = infer_shapes(g, ctx);
    ASSERT_TRUE(inferred.ok()) << inferred.to_string();
    EXPECT_EQ(shape_to_dims(*g.find_value("h2")->shape), (Dims{p.h[0], p.h[1], p.h[2], p.m2}));
    std::mt19937 rng(7);
    std::map<std::string, Tensor> in;
    for (ir::Value* gi : before->inputs) in[gi->name] = test::random_tensor(p.dt, shape_to_dims(*gi->shape), rng);
    testing::expect_outputs_close(*before, run_graph(g, in), run_graph(*before, in), 0, 0);
  }
}

TEST(FuseConvChain, LeavesPairsTheKernelDoesNotTakeAndCpuEngines) {
  std::vector<std::pair<const char*, Pair>> cases(17);
  cases[0].first = "M = 512 with a shortcut (the streamed kernel takes none)";
  cases[0].second.m = 512;
  cases[0].second.z = false;
  cases[0].second.shortcut = 1;
  cases[15].first = "M = 2048";
  cases[15].second.m = 2048;
  cases[16].first = "M = 512 over C1 = 256";
  cases[16].second.m = 512;
  cases[16].second.h = {1, 3, 3, 256};
  cases[1].first = "the next conv strided";
  cases[1].second.c_s = 2;
  cases[2].first = "the next conv padded";
  cases[2].second.c_pad = 1;
  cases[3].first = "the next conv 3x3";
  cases[3].second.c_k = 3;
  cases[3].second.c_pad = 1;
  cases[4].first = "the next conv with Z";
  cases[4].second.c_z = true;
  cases[5].first = "P with kiln.max_pool";
  cases[5].second.max_pool = true;
  cases[6].first = "a stride-2 shortcut";
  cases[6].second.z = false;
  cases[6].second.shortcut = 2;
  cases[7].first = "M2 = 256";
  cases[7].second.m2 = 256;
  cases[8].first = "M2 = 96";
  cases[8].second.m2 = 96;
  cases[9].first = "C1 = 96";
  cases[9].second.h = {1, 3, 3, 96};
  cases[10].first = "C1 + C2 + M2 = 256: the weights do not fit";
  cases[10].second.z = false;
  cases[10].second.shortcut = 1;
  cases[10].second.m2 = 128;
  cases[11].first = "FP32";
  cases[11].second.dt = DataType::kFloat32;
  cases[12].first = "P's activation SiLU";
  cases[12].second.act = "Silu";
  cases[13].first = "both Z and a shortcut";
  cases[13].second.shortcut = 1;
  cases[14].first = "y has 2^31 elements";
  cases[14].second.h = {128, 256, 256, 64};
  for (auto& [what, p] : cases) {
    SCOPED_TRACE(what);
    ir::Graph g;
    build(g, p);
    const std::vector<std::string> ops = op_types(g);
    PassContext stats;
    ASSERT_TRUE(run(g, DeviceType::kCUDA, &stats).ok());
    EXPECT_EQ(op_types(g), ops);
    EXPECT_EQ(stats.stats.count("fused_conv_chain"), 0u);
    EXPECT_FALSE(g.nodes().front()->attrs.has(ops::conv::kChainAttr));
  }
  ir::Graph cpu;
  build_two_blocks(cpu, DataType::kFloat16);
  const std::vector<std::string> ops = op_types(cpu);
  ASSERT_TRUE(run(cpu, DeviceType::kCPU).ok());
  EXPECT_EQ(op_types(cpu), ops);
}

// Of y's readers, the first that fits fuses, and only it: not a strided conv, not one reading y in a
// second slot (here as its Z too).
TEST(FuseConvChain, FusesTheFirstReaderThatReadsYAsItsXOnly) {
  Pair p;
  p.c_s = 2;
  ir::Graph g;
  build(g, p);
  ir::Value* y = g.find_value("y");
  std::mt19937 rng(9);
  auto reader = [&](const char* name, std::vector<ir::Value*> extra, const char* act) {
    ir::Value* w = g.add_constant(std::string("w_") + name, test::random_tensor(p.dt, {64, 1, 1, 256}, rng, -0.2, 0.2));
    std::vector<ir::Value*> in = {y, w};
    in.insert(in.end(), extra.begin(), extra.end());
    ir::Value* out = g.add_value(std::string("out_") + name, p.dt, Shape{2, 3, 5, 64}).value();
    add_conv(g, name, in, out, act);
    g.outputs.push_back(out);
  };
  reader("twice", {nullptr, y}, "Relu");
  reader("second", {}, nullptr);
  reader("third", {}, "Relu");
  PassContext stats;
  ASSERT_TRUE(run(g, DeviceType::kCUDA, &stats).ok());
  Status v = ir::verify(g);
  ASSERT_TRUE(v.ok()) << v.to_string();
  EXPECT_EQ(stats.stats["fused_conv_chain"], 1);
  EXPECT_EQ(node_named(g, "second"), nullptr);
  for (const char* kept : {"next", "twice", "third"}) EXPECT_NE(node_named(g, kept), nullptr) << kept;
  const ir::Node* last = node_named(g, "last");
  ASSERT_NE(last, nullptr);
  ASSERT_EQ(last->outputs.size(), 2u);
  EXPECT_EQ(last->outputs[1]->name, "out_second");
  EXPECT_EQ(last->attrs.get_string(ops::conv::kChainAttr, "absent"), "");
}

}  // namespace
}  // namespace kiln::passes

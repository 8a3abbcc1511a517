// fuse_elementwise: golden before/after graphs (what fuses, what does not),
// folded scalar constants, broadcasting, the input limit, FP16 engines through
// reduce_precision, and numerical equality with the unfused graph on random inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "harness/op_harness.h"
#include "ops/fused/fused_program.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {

namespace {

using testing::context_for;
using testing::expect_outputs_close;
using testing::fused_from;
using testing::op_types;
using testing::run_graph;
using testing::run_pass;

constexpr DataType kF32 = DataType::kFloat32;

struct Build {
  ir::Graph& g;
  DataType dt = kF32;

  ir::Value* input(const std::string& name, Shape s) {
    ir::Value* v = g.add_value(name, dt, std::move(s)).value();
    g.inputs.push_back(v);
    return v;
  }
  ir::Value* c(double v, Dims d = {}) {
    return g.add_constant("c", Tensor::from_vector<double>(dt, d, std::vector<double>(dims_volume(d), v)));
  }
  ir::Value* random(Dims d, unsigned seed) {
    std::mt19937 rng(seed);
    return g.add_constant("w", test::random_tensor(dt, d, rng, -1, 1));
  }
  ir::Value* op(const std::string& type, const std::vector<ir::Value*>& ins, const std::string& name = "") {
    ir::Value* o = g.add_unique_value("t");
    g.add_node(type, ins, {o}, name.empty() ? g.unique_name(type) : name);
    return o;
  }
  ir::Node* node(ir::Value* v) { return v->producer; }
};

struct Engine {
  BuilderConfig cfg;
  PassContext ctx;
  Engine(const ir::Graph& g, DeviceType device, bool fp16 = false) {
    cfg.set_device(device);
    if (fp16) cfg.set_flag(BuilderFlag::kFP16);
    ctx = context_for(g, cfg);
  }
};

// Runs both graphs on the same random inputs and compares every output.
void expect_same_outputs(const ir::Graph& before, const ir::Graph& after, const std::map<std::string, Dims>& dims,
                         double rtol = 1e-5, double atol = 1e-6) {
  std::mt19937 rng(11);
  std::map<std::string, Tensor> in;
  for (ir::Value* v : before.inputs) in[v->name] = test::random_tensor(v->dtype, dims.at(v->name), rng, -2, 2);
  auto want = run_graph(before, in);
  auto got = run_graph(after, in);
  expect_outputs_close(before, got, want, rtol, atol);
}

std::vector<const ir::Node*> fused_nodes(const ir::Graph& g) {
  std::vector<const ir::Node*> r;
  for (auto& n : g.nodes())
    if (n->op_type == "FusedElementwise") r.push_back(n.get());
  return r;
}

std::string program_of(const ir::Node& n) { return n.attrs.get_string("program", ""); }

}  // namespace

TEST(FuseElementwise, ChainWithScalarAndChannelConstantsBecomesOneNode) {
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{2, 3, 4, 5});
  ir::Value* bias = b.random({3, 1, 1}, 1);
  ir::Value* a = b.op("Mul", {x, b.c(0.5)}, "scale");
  ir::Value* s = b.op("Sigmoid", {a}, "gate");
  ir::Value* y = b.op("Add", {s, bias}, "shift");
  g.outputs.push_back(y);
  auto before = g.clone();
  Engine e(g, DeviceType::kCUDA);
  run_pass(g, fuse_elementwise, e.ctx);
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"FusedElementwise"})) << ir::dump(g);
  const ir::Node& f = *g.nodes()[0];
  EXPECT_EQ(f.domain, "kiln");
  EXPECT_EQ(f.name, "shift");
  EXPECT_EQ(program_of(f), "v1; t0 = Mul(in0, 0.5); t1 = Sigmoid(t0); t2 = Add(t1, in1)");
  EXPECT_EQ(f.inputs, (std::vector<ir::Value*>{x, bias}));
  EXPECT_EQ(f.outputs[0], y);
  EXPECT_EQ(fused_from(f), (std::vector<std::string>{"scale", "gate", "shift"}));
  EXPECT_EQ(e.ctx.stats["fused_elementwise"], 1);
  EXPECT_EQ(e.ctx.stats["fused_elementwise_nodes"], 3);
  ASSERT_TRUE(infer_shapes(g, e.ctx).ok());
  EXPECT_EQ(y->dtype, kF32);
  EXPECT_EQ(*y->shape, (Shape{2, 3, 4, 5}));
  expect_same_outputs(*before, g, {{"x", {2, 3, 4, 5}}});
}

TEST(FuseElementwise, DagReadingAValueTwiceFuses) {
  // t = x + y; z = t * sigmoid(t): t is read twice, both readers inside the group.
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{4, 6});
  ir::Value* y = b.input("y", Shape{6});
  ir::Value* t = b.op("Add", {x, y});
  ir::Value* z = b.op("Mul", {t, b.op("Sigmoid", {t})});
  g.outputs.push_back(z);
  auto before = g.clone();
  Engine e(g, DeviceType::kCUDA);
  run_pass(g, fuse_elementwise, e.ctx);
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"FusedElementwise"})) << ir::dump(g);
  EXPECT_EQ(program_of(*g.nodes()[0]), "v1; t0 = Add(in0, in1); t1 = Sigmoid(t0); t2 = Mul(t0, t1)");
  expect_same_outputs(*before, g, {{"x", {4, 6}}, {"y", {6}}});
}

TEST(FuseElementwise, StopsAtIntermediatesReadOutsideTheGroup) {
  // r = relu(x) is read by two chains with separate outputs: it stays; each chain of
  // two nodes after it fuses, the lone Tanh does not.
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{3, 5});
  ir::Value* r = b.op("Relu", {x});
  ir::Value* y1 = b.op("Mul", {b.op("Sigmoid", {r}), b.c(2.0)});
  ir::Value* y2 = b.op("Tanh", {r});
  g.outputs = {y1, y2};
  auto before = g.clone();
  Engine e(g, DeviceType::kCUDA);
  run_pass(g, fuse_elementwise, e.ctx);
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"Relu", "Tanh", "FusedElementwise"})) << ir::dump(g);
  auto f = fused_nodes(g);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0]->inputs, (std::vector<ir::Value*>{r}));
  EXPECT_EQ(program_of(*f[0]), "v1; t0 = Sigmoid(in0); t1 = Mul(t0, 2)");
  expect_same_outputs(*before, g, {{"x", {3, 5}}});
}

TEST(FuseElementwise, GraphOutputsAreNotSwallowed) {
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{8});
  ir::Value* r = b.op("Relu", {x});
  ir::Value* y = b.op("Exp", {r});
  g.outputs = {r, y};
  Engine e(g, DeviceType::kCUDA);
  run_pass(g, fuse_elementwise, e.ctx);
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"Relu", "Exp"}));
}

TEST(FuseElementwise, ValuesReadBySubgraphBodiesAreNotSwallowed) {
  // ONNX's expanded Range (test_range_float16_type_positive_delta_expanded): the Loop
  // body reads delta_s by name, so the Cast producing it stays although its only
  // node reader, the Div, fuses; limit_s, read by the Sub alone, joins the group.
  ir::Graph g;
  Build h{g, DataType::kFloat16};
  Build b{g};
  ir::Value* start = h.input("start", Shape{});
  ir::Value* limit = h.input("limit", Shape{});
  ir::Value* delta = h.input("delta", Shape{});
  auto to_float = [&](ir::Value* v, const std::string& name) {
    ir::Value* o = b.op("Cast", {v}, name);
    o->producer->attrs.set("to", ir::Attribute::from_int(static_cast<int64_t>(kF32)));
    return o;
  };
  ir::Value* start_s = to_float(start, "start_cast");
  ir::Value* limit_s = to_float(limit, "limit_cast");
  ir::Value* delta_s = to_float(delta, "delta_cast");
  ir::Value* steps = b.op("Div", {b.op("Sub", {limit_s, start_s}, "span"), delta_s}, "steps");
  ir::Value* last = testing::add_loop_reading(g, delta_s, start_s);
  g.outputs = {steps, last};
  auto before = g.clone();
  Engine e(g, DeviceType::kCUDA);
  run_pass(g, fuse_elementwise, e.ctx);
  auto f = fused_nodes(g);
  ASSERT_EQ(f.size(), 1u) << ir::dump(g);
  EXPECT_EQ(fused_from(*f[0]), (std::vector<std::string>{"limit_cast", "span", "steps"}));
  EXPECT_EQ(f[0]->inputs, (std::vector<ir::Value*>{limit, start_s, delta_s}));
  ASSERT_NE(delta_s->producer, nullptr) << ir::dump(g);
  EXPECT_EQ(delta_s->producer->name, "delta_cast");
  ASSERT_NE(start_s->producer, nullptr);
  EXPECT_EQ(start_s->producer->name, "start_cast");
  auto ops = op_types(g);
  EXPECT_EQ(std::count(ops.begin(), ops.end(), "Cast"), 2) << ir::dump(g);
  EXPECT_EQ(std::count(ops.begin(), ops.end(), "Loop"), 1);

  auto half = [](float v) { return Tensor::from_vector<float>(DataType::kFloat16, {}, {v}); };
  const std::map<std::string, Tensor> in = {{"start", half(1)}, {"limit", half(5)}, {"delta", half(0.5f)}};
  auto want = testing::execute(*before, in);
  auto got = testing::execute(g, in);
  ASSERT_TRUE(got.count(last->name)) << ir::dump(g);
  EXPECT_FLOAT_EQ(static_cast<float>(got.at(last->name).get_as_double(0)), 2.5f);  // 1 + 3 * 0.5
  for (ir::Value* o : before->outputs) {
    SCOPED_TRACE(o->name);
    EXPECT_TRUE(test::tensors_close(got.at(o->name), want.at(o->name), 1e-6, 1e-6));
  }
}

TEST(FuseElementwise, SingleNodesAndCpuEnginesAreLeftAlone) {
  {
    ir::Graph g;
    Build b{g};
    g.outputs.push_back(b.op("Relu", {b.input("x", Shape{4})}));
    Engine e(g, DeviceType::kCUDA);
    run_pass(g, fuse_elementwise, e.ctx);
    EXPECT_EQ(op_types(g), (std::vector<std::string>{"Relu"}));
  }
  for (bool no_config : {false, true}) {
    ir::Graph g;
    Build b{g};
    ir::Value* x = b.input("x", Shape{4});
    g.outputs.push_back(b.op("Exp", {b.op("Neg", {x})}));
    Engine e(g, DeviceType::kCPU);
    if (no_config) e.ctx.config = nullptr;
    run_pass(g, fuse_elementwise, e.ctx);
    EXPECT_EQ(op_types(g), (std::vector<std::string>{"Neg", "Exp"}));
  }
}

TEST(FuseElementwise, NonFusableNodesSplitChains) {
  // Softmax is not elementwise and integer tensors stay out.
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{2, 7});
  ir::Value* s = b.op("Softmax", {b.op("Exp", {b.op("Neg", {x})})});
  ir::Value* y = b.op("Add", {b.op("Sqrt", {s}), b.c(1.0)});
  Build ib{g, DataType::kInt32};
  ir::Value* k = ib.input("k", Shape{3});
  ir::Value* kk = ib.op("Neg", {ib.op("Abs", {k})});
  g.outputs = {y, kk};
  auto before = g.clone();
  Engine e(g, DeviceType::kCUDA);
  run_pass(g, fuse_elementwise, e.ctx);
  auto types = op_types(g);
  std::sort(types.begin(), types.end());
  EXPECT_EQ(types, (std::vector<std::string>{"Abs", "FusedElementwise", "FusedElementwise", "Neg", "Softmax"}))
      << ir::dump(g);
  std::vector<std::string> programs;
  for (const ir::Node* f : fused_nodes(g)) programs.push_back(program_of(*f));
  std::sort(programs.begin(), programs.end());
  EXPECT_EQ(programs,
            (std::vector<std::string>{"v1; t0 = Neg(in0); t1 = Exp(t0)", "v1; t0 = Sqrt(in0); t1 = Add(t0, 1)"}));
  std::map<std::string, Dims> dims = {{"x", {2, 7}}, {"k", {3}}};
  expect_same_outputs(*before, g, dims);
}

TEST(FuseElementwise, BroadcastsChannelsAndScalarInputs) {
  // [N,C,H,W] * [C,1,1] + scalar input, then HardSwish and a Clip with constant bounds.
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{Dim::symbol("N"), 3, 5, 7});
  ir::Value* s = b.input("s", Shape{3, 1, 1});
  ir::Value* k = b.input("k", Shape{});
  ir::Value* m = b.op("Mul", {x, s});
  ir::Value* a = b.op("Add", {m, k});
  ir::Value* h = b.op("HardSwish", {a});
  ir::Value* clip = b.op("Clip", {h, b.c(-0.25), b.c(4.0)});
  clip->producer->opset = 13;
  g.outputs.push_back(clip);
  auto before = g.clone();
  Engine e(g, DeviceType::kCUDA);
  run_pass(g, fuse_elementwise, e.ctx);
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"FusedElementwise"})) << ir::dump(g);
  EXPECT_EQ(program_of(*g.nodes()[0]),
            "v1; t0 = Mul(in0, in1); t1 = Add(t0, in2); t2 = HardSwish(t1); t3 = Clip(t2, -0.25, 4)");
  ASSERT_TRUE(infer_shapes(g, e.ctx).ok());
  EXPECT_EQ(*clip->shape, (Shape{Dim::symbol("N"), 3, 5, 7}));
  expect_same_outputs(*before, g, {{"x", {2, 3, 5, 7}}, {"s", {3, 1, 1}}, {"k", {}}});
}

TEST(FuseElementwise, LowersVariadicAttributedAndContribOps) {
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{2, 3, 8});
  ir::Value* y = b.input("y", Shape{3, 8});
  ir::Value* z = b.input("z", Shape{8});
  ir::Value* sum = b.op("Sum", {x, y, z});
  ir::Value* lr = b.op("LeakyRelu", {sum});
  lr->producer->attrs.set("alpha", ir::Attribute::from_float(0.2f));
  ir::Value* p = b.op("Pow", {lr, g.add_constant("e", Tensor::from_vector<int64_t>(DataType::kInt64, {}, {2}))});
  ir::Value* fg = b.op("FastGelu", {p, b.random({8}, 3)});
  fg->producer->domain = "com.microsoft";
  ir::Value* mx = b.op("Max", {fg, x, b.c(-0.5)});
  ir::Value* el = b.op("Elu", {mx});
  g.outputs.push_back(el);
  auto before = g.clone();
  Engine e(g, DeviceType::kCUDA);
  run_pass(g, fuse_elementwise, e.ctx);
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"FusedElementwise"})) << ir::dump(g);
  EXPECT_EQ(program_of(*g.nodes()[0]),
            "v1; t0 = Add(in0, in1); t1 = Add(t0, in2); t2 = LeakyRelu(t1, 0.200000003); t3 = Pow(t2, 2);"
            " t4 = Add(t3, in3); t5 = GeluTanh(t4); t6 = Max(t5, in0); t7 = Max(t6, -0.5); t8 = Elu(t7, 1)");
  EXPECT_EQ(g.nodes()[0]->inputs.size(), 4u);
  expect_same_outputs(*before, g, {{"x", {2, 3, 8}}, {"y", {3, 8}}, {"z", {8}}}, 1e-5, 1e-5);
}

TEST(FuseElementwise, SplitsGroupsAtTheInputLimit) {
  // A chain of Adds reading 20 different inputs needs two fused nodes.
  ir::Graph g;
  Build b{g};
  ir::Value* acc = b.input("x0", Shape{5});
  std::map<std::string, Dims> dims = {{"x0", {5}}};
  for (int i = 1; i < 20; ++i) {
    const std::string name = "x" + std::to_string(i);
    acc = b.op("Add", {acc, b.input(name, Shape{5})});
    dims[name] = {5};
  }
  g.outputs.push_back(b.op("Relu", {acc}));
  auto before = g.clone();
  Engine e(g, DeviceType::kCUDA);
  run_pass(g, fuse_elementwise, e.ctx);
  auto f = fused_nodes(g);
  ASSERT_EQ(f.size(), 2u) << ir::dump(g);
  for (const ir::Node* n : f) EXPECT_LE(n->inputs.size(), static_cast<size_t>(ops::fused::kMaxInputs));
  EXPECT_EQ(g.nodes().size(), 2u);
  expect_same_outputs(*before, g, dims);
}

TEST(FuseElementwise, CastsFuseOnlyWithoutReducedPrecision) {
  auto make = [](ir::Graph& g) {
    Build b{g};
    ir::Value* x = b.input("x", Shape{4, 4});
    ir::Value* c = b.op("Cast", {b.op("Mul", {x, x})});
    c->producer->attrs.set("to", ir::Attribute::from_int(static_cast<int64_t>(DataType::kFloat16)));
    Build hb{g, DataType::kFloat16};
    g.outputs.push_back(hb.op("Relu", {c}));
  };
  {
    ir::Graph g;
    make(g);
    auto before = g.clone();
    Engine e(g, DeviceType::kCUDA);
    run_pass(g, fuse_elementwise, e.ctx);
    ASSERT_EQ(op_types(g), (std::vector<std::string>{"FusedElementwise"})) << ir::dump(g);
    EXPECT_EQ(program_of(*g.nodes()[0]), "v1; t0 = Mul(in0, in0); t1 = CastF16(t0); t2 = Relu(t1)");
    ASSERT_TRUE(infer_shapes(g, e.ctx).ok());
    EXPECT_EQ(g.outputs[0]->dtype, DataType::kFloat16);
    expect_same_outputs(*before, g, {{"x", {4, 4}}});
  }
  {
    ir::Graph g;
    make(g);
    Engine e(g, DeviceType::kCUDA, /*fp16=*/true);
    run_pass(g, fuse_elementwise, e.ctx);
    EXPECT_EQ(op_types(g), (std::vector<std::string>{"Mul", "Cast", "Relu"}));
  }
}

TEST(FuseElementwise, Fp16EnginesHalveTheFusedNode) {
  // fuse_elementwise then reduce_precision, as in the pipeline: the fused node reads
  // and writes fp16 (its program unchanged) with Casts at the engine's edges.
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{2, 16});
  ir::Value* w = b.random({16}, 4);
  ir::Value* y = b.op("Mul", {b.op("Tanh", {b.op("Add", {x, w})}), b.c(3.0)});
  g.outputs.push_back(y);
  auto before = g.clone();
  Engine e(g, DeviceType::kCUDA, /*fp16=*/true);
  run_pass(g, fuse_elementwise, e.ctx);
  const std::string program = program_of(*fused_nodes(g).at(0));
  ASSERT_TRUE(reduce_precision(g, e.ctx).ok());
  ASSERT_TRUE(ir::verify(g).ok());
  auto f = fused_nodes(g);
  ASSERT_EQ(f.size(), 1u) << ir::dump(g);
  EXPECT_EQ(program_of(*f[0]), program);
  for (const ir::Value* v : f[0]->inputs) EXPECT_EQ(v->dtype, DataType::kFloat16) << v->name;
  EXPECT_EQ(f[0]->outputs[0]->dtype, DataType::kFloat16);
  EXPECT_EQ(g.outputs[0]->dtype, kF32);
  expect_same_outputs(*before, g, {{"x", {2, 16}}}, 1e-2, 1e-2);
}

TEST(FuseElementwise, RunsInThePipelineBeforeReducePrecision) {
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{Dim::symbol("batch"), 768});
  ir::Value* bias = b.random({768}, 5);
  g.outputs.push_back(b.op("Gelu", {b.op("Add", {x, bias})}));
  g.outputs[0]->producer->opset = 20;
  auto before = g.clone();
  Engine e(g, DeviceType::kCUDA, /*fp16=*/true);
  ASSERT_TRUE(run_pipeline(g, e.ctx).ok());
  auto f = fused_nodes(g);
  ASSERT_EQ(f.size(), 1u) << ir::dump(g);
  EXPECT_EQ(program_of(*f[0]), "v1; t0 = Add(in0, in1); t1 = Gelu(t0)");
  EXPECT_EQ(f[0]->outputs[0]->dtype, DataType::kFloat16);
  expect_same_outputs(*before, g, {{"x", {3, 768}}}, 1e-2, 1e-2);
}

TEST(FuseElementwise, FusesRank4ChainsInHalfConvEngines) {
  // nhwc_layout carries channels-last regions through FusedElementwise too (nhwc_layout_test.cc).
  for (bool fp16 : {false, true}) {
    ir::Graph g;
    Build b{g};
    ir::Value* x = b.input("x", Shape{1, 3, 8, 8});
    ir::Value* c = b.op("Conv", {x, b.random({4, 3, 3, 3}, 6)});
    ir::Value* y = b.op("Sigmoid", {b.op("Mul", {c, b.c(2.0)})});
    ir::Value* z = b.op("Exp", {b.op("Neg", {b.input("v", Shape{4, 5})})});
    g.outputs = {y, z};
    Engine e(g, DeviceType::kCUDA, fp16);
    run_pass(g, fuse_elementwise, e.ctx);
    EXPECT_EQ(fused_nodes(g).size(), 2u) << ir::dump(g);
  }
}

TEST(FuseElementwise, HalfEnginesEndNoGroupInPow) {
  for (bool pow_last : {true, false}) {
    ir::Graph g;
    Build b{g};
    ir::Value* x = b.input("x", Shape{6});
    ir::Value* p = b.op("Pow", {b.op("Sub", {x, b.c(1.0)}), b.c(2.0)});
    g.outputs.push_back(pow_last ? p : b.op("Sqrt", {p}));
    Engine e(g, DeviceType::kCUDA, /*fp16=*/true);
    run_pass(g, fuse_elementwise, e.ctx);
    EXPECT_EQ(fused_nodes(g).size(), pow_last ? 0u : 1u) << ir::dump(g);
  }
}

}  // namespace kiln::passes

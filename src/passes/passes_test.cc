// Golden before/after tests for each pass, plus numerical equivalence of the
// optimized graph with the unoptimized one on random inputs.
#include <gtest/gtest.h>

#include <cstdlib>

#include <random>
#include <set>

#include "harness/op_harness.h"
#include "harness/scoped_env.h"
#include "ops/op.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {

namespace {

using testing::context_for;
using testing::op_types;
using testing::run_graph;
using testing::run_pass;

}  // namespace

TEST(Passes, ConvBatchNormFoldsIntoConvAndKeepsResults) {
  std::mt19937 rng(21);
  ir::Graph g;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{2, 3, 7, 7}).value();
  g.inputs.push_back(x);
  ir::Value* w = g.add_constant("w", test::random_tensor(DataType::kFloat32, {4, 3, 3, 3}, rng));
  ir::Value* b = g.add_constant("b", test::random_tensor(DataType::kFloat32, {4}, rng));
  ir::Value* scale = g.add_constant("scale", test::random_tensor(DataType::kFloat32, {4}, rng, 0.5, 2));
  ir::Value* shift = g.add_constant("shift", test::random_tensor(DataType::kFloat32, {4}, rng));
  ir::Value* mean = g.add_constant("mean", test::random_tensor(DataType::kFloat32, {4}, rng));
  ir::Value* var = g.add_constant("var", test::random_tensor(DataType::kFloat32, {4}, rng, 0.1, 3));
  ir::Value* c = g.add_value("c").value();
  ir::Value* y = g.add_value("y").value();
  ir::Value* r = g.add_value("r").value();
  ir::Node* conv = g.add_node("Conv", {x, w, b}, {c}, "conv");
  conv->attrs.set("pads", ir::Attribute::from_ints({1, 1, 1, 1}));
  g.add_node("BatchNormalization", {c, scale, shift, mean, var}, {y}, "bn");
  g.add_node("Relu", {y}, {r}, "relu");
  g.outputs.push_back(r);
  auto before = g.clone();

  PassContext ctx = context_for(g);
  Status s = run_pipeline(g, ctx);
  ASSERT_TRUE(s.ok()) << s.to_string();
  // BatchNorm folds into the Conv, then the Relu joins it as an epilogue.
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"FusedConv"}));
  EXPECT_EQ(ctx.stats["folded_conv_bn"], 1);
  EXPECT_EQ(ctx.stats["fused_conv_epilogues"], 1);
  EXPECT_EQ(g.nodes()[0]->outputs[0]->name, "r");

  Tensor xin = test::random_tensor(DataType::kFloat32, {2, 3, 7, 7}, rng);
  auto a = run_graph(*before, {{"x", xin}});
  auto o = run_graph(g, {{"x", xin}});
  EXPECT_TRUE(test::tensors_close(o.at("r"), a.at("r"), 1e-4, 1e-5));
}

TEST(Passes, DisabledPassesAreSkipped) {
  // KILN_DISABLE_PASSES names passes to skip: Conv -> Relu stays two nodes.
  for (const char* env : {"fuse_conv_activation", "fold_constants,fuse_conv_activation"}) {
    ir::Graph g;
    ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{1, 2, 5, 5}).value();
    g.inputs.push_back(x);
    std::mt19937 rng(3);
    ir::Value* w = g.add_constant("w", test::random_tensor(DataType::kFloat32, {2, 2, 3, 3}, rng));
    ir::Value* c = g.add_value("c").value();
    ir::Value* r = g.add_value("r").value();
    g.add_node("Conv", {x, w}, {c}, "conv");
    g.add_node("Relu", {c}, {r}, "relu");
    g.outputs.push_back(r);
    Status s;
    {
      test::ScopedEnv off("KILN_DISABLE_PASSES", env);
      PassContext ctx = context_for(g);
      s = run_pipeline(g, ctx);
    }
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_EQ(op_types(g), (std::vector<std::string>{"Conv", "Relu"})) << env;
  }
}

TEST(Passes, ConstantSubgraphsFoldAndIdentitiesAndDeadNodesGo) {
  std::mt19937 rng(4);
  ir::Graph g;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{Dim::symbol("batch"), 4}).value();
  g.inputs.push_back(x);
  ir::Value* c1 = g.add_constant("c1", test::random_tensor(DataType::kFloat32, {4}, rng));
  ir::Value* c2 = g.add_constant("c2", test::random_tensor(DataType::kFloat32, {4}, rng));
  ir::Value* csum = g.add_value("csum").value();
  ir::Value* cneg = g.add_value("cneg").value();
  ir::Value* id = g.add_value("id").value();
  ir::Value* y = g.add_value("y").value();
  ir::Value* dead = g.add_value("dead").value();
  g.add_node("Add", {c1, c2}, {csum}, "const_add");  // folds
  g.add_node("Neg", {csum}, {cneg}, "const_neg");    // folds
  g.add_node("Identity", {x}, {id}, "identity");     // removed
  g.add_node("Mul", {id, cneg}, {y}, "mul");
  g.add_node("Exp", {x}, {dead}, "unused");  // dead
  g.outputs.push_back(y);
  auto before = g.clone();

  PassContext ctx = context_for(g);
  Status s = run_pipeline(g, ctx);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"Mul"}));
  EXPECT_EQ(g.nodes()[0]->inputs[0], g.inputs[0]);
  EXPECT_TRUE(g.nodes()[0]->inputs[1]->is_constant());
  EXPECT_EQ(ctx.stats["folded_constants"], 2);
  EXPECT_EQ(ctx.stats["removed_identity"], 1);
  EXPECT_EQ(ctx.stats["removed_dead"], 1);
  // Symbolic shape inference keeps the batch symbol.
  ASSERT_TRUE(g.outputs[0]->shape);
  EXPECT_EQ(shape_to_string(*g.outputs[0]->shape), "[batch,4]");

  Tensor xin = test::random_tensor(DataType::kFloat32, {3, 4}, rng);
  EXPECT_TRUE(
      test::tensors_close(run_graph(g, {{"x", xin}}).at("y"), run_graph(*before, {{"x", xin}}).at("y"), 1e-6, 0));
}

// A Cast to the dtype its input has is dropped (one to another dtype stays); a Gather
// reading its axis in order (indices 0..n-1, ones before the axis) becomes a Reshape, and
// a permuting one stays. Same outputs as before.
TEST(Passes, SameDtypeCastAndInOrderGatherAreNotKernels) {
  std::mt19937 rng(5);
  ir::Graph g;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{1, 6, 2}).value();
  g.inputs.push_back(x);
  auto value = [&](const char* name) { return g.add_value(name).value(); };
  ir::Value *c = value("c"), *h = value("h"), *in_order = value("in_order"), *permuted = value("permuted");
  g.add_node("Cast", {x}, {c}, "same")->attrs.set("to", ir::Attribute::from_int(1));
  g.add_node("Cast", {c}, {h}, "to_half")->attrs.set("to", ir::Attribute::from_int(10));
  ir::Value* seq = g.add_constant("seq", Tensor::from_vector<int64_t>(DataType::kInt64, {2, 3}, {0, 1, 2, 3, 4, 5}));
  ir::Value* perm = g.add_constant("perm", Tensor::from_vector<int64_t>(DataType::kInt64, {6}, {0, 1, 2, 3, 5, 4}));
  g.add_node("Gather", {h, seq}, {in_order}, "gather_seq")->attrs.set("axis", ir::Attribute::from_int(1));
  g.add_node("Gather", {h, perm}, {permuted}, "gather_perm")->attrs.set("axis", ir::Attribute::from_int(1));
  g.outputs = {in_order, permuted};
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, infer_shapes, ctx);
  run_pass(g, eliminate_identity, ctx);
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"Cast", "Reshape", "Gather"})) << ir::dump(g);
  EXPECT_EQ(g.nodes()[0]->inputs[0], x);
  EXPECT_EQ(ctx.stats["removed_identity"], 1);
  EXPECT_EQ(ctx.stats["in_order_gathers_reshaped"], 1);
  Tensor xin = test::random_tensor(DataType::kFloat32, {1, 6, 2}, rng);
  auto got = run_graph(g, {{"x", xin}}), want = run_graph(*before, {{"x", xin}});
  for (const char* o : {"in_order", "permuted"}) {
    EXPECT_EQ(got.at(o).dims(), want.at(o).dims()) << o;
    EXPECT_TRUE(test::tensors_close(got.at(o), want.at(o), 0, 0)) << o;
  }
}

TEST(Passes, IdentityFeedingAGraphOutputIsKept) {
  ir::Graph g;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{2}).value();
  g.inputs.push_back(x);
  ir::Value* y = g.add_value("y").value();
  g.add_node("Identity", {x}, {y}, "id");
  g.outputs.push_back(y);
  PassContext ctx = context_for(g);
  ASSERT_TRUE(run_pipeline(g, ctx).ok());
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"Identity"}));
  EXPECT_EQ(g.outputs[0]->name, "y");
}

}  // namespace kiln::passes

namespace kiln::passes {

namespace {

// x -> Conv -> [Add(residual)] -> act; returns the graph and its input shape.
std::unique_ptr<ir::Graph> conv_graph(std::mt19937& rng, const std::string& tail, bool conv_is_output = false) {
  auto g = std::make_unique<ir::Graph>();
  g->opset_imports[""] = 17;
  ir::Value* x = g->add_value("x", DataType::kFloat32, Shape{2, 3, 6, 6}).value();
  ir::Value* res = g->add_value("res", DataType::kFloat32, Shape{2, 4, 6, 6}).value();
  g->inputs = {x, res};
  ir::Value* w = g->add_constant("w", test::random_tensor(DataType::kFloat32, {4, 3, 3, 3}, rng));
  ir::Value* b = g->add_constant("b", test::random_tensor(DataType::kFloat32, {4}, rng));
  ir::Value* c = g->add_value("c").value();
  ir::Node* conv = g->add_node("Conv", {x, w, b}, {c}, "conv");
  conv->attrs.set("pads", ir::Attribute::from_ints({1, 1, 1, 1}));
  ir::Value* cur = c;
  if (tail == "add_relu" || tail == "add") {
    ir::Value* a = g->add_value("a").value();
    g->add_node("Add", {res, cur}, {a}, "add");
    cur = a;
  }
  if (tail == "add_relu" || tail == "relu") {
    ir::Value* r = g->add_value("r").value();
    g->add_node("Relu", {cur}, {r}, "relu");
    cur = r;
  }
  if (tail == "silu") {
    ir::Value* s = g->add_value("s").value();
    ir::Value* m = g->add_value("m").value();
    g->add_node("Sigmoid", {cur}, {s}, "sig");
    g->add_node("Mul", {cur, s}, {m}, "mul");
    cur = m;
  }
  if (tail == "clip") {
    ir::Value* lo = g->add_constant("lo", Tensor::from_vector<float>(DataType::kFloat32, {}, {0.f}));
    ir::Value* hi = g->add_constant("hi", Tensor::from_vector<float>(DataType::kFloat32, {}, {0.5f}));
    ir::Value* r = g->add_value("r").value();
    g->add_node("Clip", {cur, lo, hi}, {r}, "clip");
    cur = r;
  }
  g->outputs.push_back(cur);
  if (conv_is_output && cur != c) g->outputs.push_back(c);
  return g;
}

void expect_fused(const std::string& tail, const std::string& activation, size_t inputs) {
  SCOPED_TRACE(tail);
  std::mt19937 rng(5);
  auto g = conv_graph(rng, tail);
  auto before = g->clone();
  PassContext ctx = context_for(*g);
  Status s = run_pipeline(*g, ctx);
  ASSERT_TRUE(s.ok()) << s.to_string();
  ASSERT_EQ(op_types(*g), (std::vector<std::string>{"FusedConv"}));
  const ir::Node& f = *g->nodes()[0];
  EXPECT_EQ(f.domain, "com.microsoft");
  EXPECT_EQ(f.attrs.get_string("activation", ""), activation);
  EXPECT_EQ(f.inputs.size(), inputs);
  EXPECT_EQ(f.attrs.get_ints("pads"), (std::vector<int64_t>{1, 1, 1, 1}));
  Tensor xin = test::random_tensor(DataType::kFloat32, {2, 3, 6, 6}, rng);
  Tensor rin = test::random_tensor(DataType::kFloat32, {2, 4, 6, 6}, rng);
  auto a = run_graph(*before, {{"x", xin}, {"res", rin}});
  auto o = run_graph(*g, {{"x", xin}, {"res", rin}});
  std::string out = g->outputs[0]->name;
  EXPECT_TRUE(test::tensors_close(o.at(out), a.at(out), 1e-5, 1e-6));
}

}  // namespace

TEST(Passes, ConvEpiloguesFuse) {
  expect_fused("add_relu", "Relu", 4);
  expect_fused("relu", "Relu", 3);
  expect_fused("silu", "Silu", 3);
  expect_fused("clip", "Clip", 3);
  expect_fused("add", "", 4);
}

TEST(Passes, ConvReadByOthersIsNotFused) {
  std::mt19937 rng(6);
  auto g = conv_graph(rng, "add_relu", /*conv_is_output=*/true);
  PassContext ctx = context_for(*g);
  ASSERT_TRUE(run_pipeline(*g, ctx).ok());
  EXPECT_EQ(op_types(*g), (std::vector<std::string>{"Conv", "Add", "Relu"}));
}

TEST(FusedConv, FastKernelMatchesReference) {
  for (const char* act : {"Relu", "Silu", "Sigmoid", "Tanh"}) {
    for (DataType dt : {DataType::kFloat32, DataType::kFloat16}) {
      SCOPED_TRACE(std::string(act) + " " + dtype_name(dt));
      test::OpCase c("FusedConv", 1, "com.microsoft");
      c.attr("pads", ir::Attribute::from_ints({1, 0, 1, 0}));
      c.attr("strides", ir::Attribute::from_ints({2, 1}));
      c.attr("activation", ir::Attribute::from_string(act));
      c.input(dt, {2, 6, 9, 7}).input(dt, {8, 3, 3, 3}).input(dt, {8}).input(dt, {2, 8, 5, 5});
      c.attr("group", ir::Attribute::from_int(2));
      double tol = dt == DataType::kFloat32 ? 1e-4 : 2e-2;
      EXPECT_GE(c.expect_all_kernels_match(tol, tol), 1);
    }
  }
}

}  // namespace kiln::passes

namespace kiln::passes {

TEST(Passes, MatMulBiasFusesAndKeepsResults) {
  std::mt19937 rng(8);
  for (int variant = 0; variant < 4; ++variant) {
    SCOPED_TRACE(variant);
    ir::Graph g;
    g.opset_imports[""] = 17;
    ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{2, 3, 4}).value();
    g.inputs.push_back(x);
    ir::Value* w = g.add_constant("w", test::random_tensor(DataType::kFloat32, {4, 5}, rng));
    // 0: bias [5]; 1: bias [1, 1, 5] first operand; 2: bias [3, 5] (not a last-axis vector); 3: y read twice.
    Dims bd = variant == 1 ? Dims{1, 1, 5} : variant == 2 ? Dims{3, 5} : Dims{5};
    ir::Value* b = g.add_constant("b", test::random_tensor(DataType::kFloat32, bd, rng));
    ir::Value* y = g.add_value("y").value();
    ir::Value* z = g.add_value("z").value();
    g.add_node("MatMul", {x, w}, {y}, "mm");
    if (variant == 1)
      g.add_node("Add", {b, y}, {z}, "add");
    else
      g.add_node("Add", {y, b}, {z}, "add");
    g.outputs.push_back(z);
    if (variant == 3) {
      ir::Value* r = g.add_value("r").value();
      g.add_node("Relu", {y}, {r}, "relu");
      g.outputs.push_back(r);
    }
    auto before = g.clone();
    PassContext ctx = context_for(g);
    ASSERT_TRUE(run_pipeline(g, ctx).ok());
    if (variant <= 1) {
      ASSERT_EQ(op_types(g), (std::vector<std::string>{"MatMulBias"}));
      EXPECT_EQ(g.nodes()[0]->domain, "kiln");
      EXPECT_EQ(g.nodes()[0]->outputs[0]->name, "z");
    } else {
      EXPECT_EQ(op_types(g)[0], "MatMul");
    }
    Tensor xin = test::random_tensor(DataType::kFloat32, {2, 3, 4}, rng);
    auto a = run_graph(*before, {{"x", xin}});
    auto o = run_graph(g, {{"x", xin}});
    EXPECT_TRUE(test::tensors_close(o.at("z"), a.at("z"), 1e-5, 1e-6));
  }
}

TEST(MatMulBias, KernelsMatchReference) {
  for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16}) {
    for (Dims a : {Dims{7, 12}, Dims{2, 5, 12}, Dims{3, 1, 4, 12}}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " " + dims_to_string(a));
      test::OpCase c("MatMulBias", 1, "kiln");
      c.input(dt, a).input(dt, {12, 9}).input(dt, {9});
      double tol = dt == DataType::kFloat32 ? 1e-4 : 2e-2;
      c.expect_all_kernels_match(tol, tol);
    }
  }
}

}  // namespace kiln::passes

namespace kiln::passes {

// conv -> relu -> maxpool -> conv -> add(residual) -> concat(ch) -> split(ch) -> mul(per-channel const) -> GAP
TEST(Passes, NhwcLayoutForHalfCudaEnginesKeepsResults) {
  std::mt19937 rng(12);
  ir::Graph g;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{2, 3, 9, 9}).value();
  g.inputs.push_back(x);
  auto cst = [&](const char* n, Dims d) { return g.add_constant(n, test::random_tensor(DataType::kFloat32, d, rng)); };
  auto val = [&](const char* n) { return g.add_value(n).value(); };
  ir::Value *c1 = val("c1"), *r1 = val("r1"), *p1 = val("p1"), *c2 = val("c2"), *a = val("a"), *cat = val("cat"),
            *s0 = val("s0"), *s1 = val("s1"), *m = val("m"), *gap = val("gap");
  ir::Node* conv1 = g.add_node("Conv", {x, cst("w1", {4, 3, 3, 3}), cst("b1", {4})}, {c1}, "conv1");
  conv1->attrs.set("pads", ir::Attribute::from_ints({1, 1, 1, 1}));
  g.add_node("Relu", {c1}, {r1}, "relu");
  ir::Node* pool = g.add_node("MaxPool", {r1}, {p1}, "pool");
  pool->attrs.set("kernel_shape", ir::Attribute::from_ints({3, 3}));
  pool->attrs.set("strides", ir::Attribute::from_ints({2, 2}));
  ir::Node* conv2 = g.add_node("Conv", {p1, cst("w2", {4, 2, 3, 3})}, {c2}, "conv2");
  conv2->attrs.set("pads", ir::Attribute::from_ints({1, 1, 1, 1}));
  conv2->attrs.set("group", ir::Attribute::from_int(2));
  g.add_node("Add", {c2, p1}, {a}, "residual");
  ir::Node* concat = g.add_node("Concat", {a, p1}, {cat}, "concat");
  concat->attrs.set("axis", ir::Attribute::from_int(1));
  ir::Node* split = g.add_node("Split", {cat}, {s0, s1}, "split");
  split->attrs.set("axis", ir::Attribute::from_int(1));
  split->opset = 13;
  g.add_node("Mul", {s0, cst("scale", {1, 4, 1, 1})}, {m}, "scale");
  // Resize (constant scales) and Slices (explicit channel axes; default axes) stay in the region.
  ir::Value *up = val("up"), *sl = val("sl"), *sl2 = val("sl2");
  ir::Node* resize = g.add_node(
      "Resize",
      {m, nullptr, g.add_constant("scales", Tensor::from_vector<float>(DataType::kFloat32, {4}, {1, 1, 2, 2}))}, {up},
      "resize");
  resize->attrs.set("mode", ir::Attribute::from_string("nearest"));
  auto i64 = [&](const char* n, std::vector<int64_t> v) {
    return g.add_constant(n, Tensor::from_vector<int64_t>(DataType::kInt64, {static_cast<int64_t>(v.size())}, v));
  };
  g.add_node("Slice", {up, i64("st", {1}), i64("en", {3}), i64("ax", {1})}, {sl}, "slice_c");
  g.add_node("Slice", {sl, i64("st2", {0, 0, 1}), i64("en2", {2, 2, 7})}, {sl2}, "slice_h");
  g.add_node("GlobalAveragePool", {sl2}, {gap}, "gap");
  g.outputs = {gap, s1};
  for (auto& n : g.nodes())
    if (n->opset == 0) n->opset = 17;
  auto before = g.clone();
  PassContext ctx = context_for(g);
  BuilderConfig cfg;
  cfg.set_device(DeviceType::kCUDA);
  cfg.set_flag(BuilderFlag::kFP16);
  ctx.config = &cfg;
  Status s = run_pipeline(g, ctx);
  ASSERT_TRUE(s.ok()) << s.to_string();
  int nhwc_nodes = 0, transposes = 0;
  for (auto& n : g.nodes()) {
    nhwc_nodes += n->attrs.get_int("kiln.nhwc", 0) != 0;
    transposes += n->op_type == "Transpose";
  }
  EXPECT_EQ(nhwc_nodes, 4) << "two convs, the pool and the global pool";
  // The pooled [N,1,1,C] leaves as a Reshape: the cancel_transposes after the layout turns a
  // Transpose that moves only size-1 dims into one (free: the memory plan aliases it).
  EXPECT_EQ(transposes, 2) << "into the region, out to the output s1";
  EXPECT_GT(ctx.stats["nhwc_layers"], 6);
  Tensor xin = test::random_tensor(DataType::kFloat32, {2, 3, 9, 9}, rng);
  auto want = run_graph(*before, {{"x", xin}});
  auto got = run_graph(g, {{"x", xin}});
  for (const char* o : {"gap", "s1"}) {
    SCOPED_TRACE(o);
    EXPECT_EQ(got.at(o).dims(), want.at(o).dims());
    EXPECT_TRUE(test::tensors_close(got.at(o), want.at(o), 2e-2, 2e-2));
  }
}

TEST(NhwcKernels, ConvAndPoolMatchReference) {
  for (DataType dt : {DataType::kFloat16, DataType::kFloat32}) {
    double tol = dt == DataType::kFloat32 ? 1e-4 : 2e-2;
    test::OpCase c("FusedConv", 1, "com.microsoft");
    c.attr("pads", ir::Attribute::from_ints({1, 1, 1, 1})).attr("strides", ir::Attribute::from_ints({2, 1}));
    c.attr("activation", ir::Attribute::from_string("Relu")).attr("kiln.nhwc", ir::Attribute::from_int(1));
    c.input(dt, {2, 9, 7, 8}).input(dt, {16, 3, 3, 8}).input(dt, {16}).input(dt, {2, 5, 7, 16});
    c.expect_all_kernels_match(tol, tol);
    test::OpCase v("Conv", 17);
    v.attr("pads", ir::Attribute::from_ints({0, 1, 0, 1})).attr("group", ir::Attribute::from_int(4));
    v.attr("kiln.nhwc", ir::Attribute::from_int(1));
    v.input(dt, {1, 6, 5, 8}).input(dt, {8, 3, 1, 2});
    v.expect_all_kernels_match(tol, tol);
    for (const char* op : {"MaxPool", "AveragePool"}) {
      test::OpCase p(op, 17);
      p.attr("kernel_shape", ir::Attribute::from_ints({3, 2})).attr("strides", ir::Attribute::from_ints({2, 2}));
      p.attr("pads", ir::Attribute::from_ints({1, 0, 1, 1})).attr("kiln.nhwc", ir::Attribute::from_int(1));
      p.input(dt, {2, 7, 6, 5});
      p.expect_all_kernels_match(tol, tol);
    }
  }
}

}  // namespace kiln::passes

namespace kiln::passes {

TEST(FusionUtil, SubgraphCapturesCountAsReaders) {
  // r = Relu(x) feeds y = Neg(r), and a Loop body reads r by name.
  ir::Graph g;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{4}).value();
  g.inputs.push_back(x);
  ir::Value* r = g.add_value("r").value();
  ir::Value* y = g.add_value("y").value();
  ir::Value* u = g.add_value("u").value();
  g.add_node("Relu", {x}, {r}, "relu");
  ir::Node* neg = g.add_node("Neg", {r}, {y}, "neg");
  g.add_node("Abs", {x}, {u}, "abs");
  g.outputs = {y, testing::add_loop_reading(g, r, x)};
  EXPECT_EQ(captured_names(g), (std::set<std::string>{"r"}));
  EXPECT_TRUE(captured(g, r));
  EXPECT_FALSE(captured(g, y));
  EXPECT_EQ(only_reader(g, r), nullptr);  // Neg and the body
  EXPECT_FALSE(unread(g, r));
  EXPECT_TRUE(unread(g, u));
  neg->inputs[0] = x;
  EXPECT_FALSE(unread(g, r));  // the body alone
}

TEST(Passes, ReducePrecisionKeepsValuesReadBySubgraphBodiesFloat32) {
  // a = Relu(x) turns FP16; the Loop body reading `a` by name stays FP32, so `a`
  // keeps its name and type through a Cast of the half copy.
  std::mt19937 rng(4);
  ir::Graph g;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{2, 3}).value();
  g.inputs.push_back(x);
  ir::Value* a = g.add_value("a").value();
  ir::Value* y = g.add_value("y").value();
  g.add_node("Relu", {x}, {a}, "relu");
  g.add_node("Sigmoid", {a}, {y}, "gate");
  g.outputs = {y, testing::add_loop_reading(g, a, x)};
  auto before = g.clone();
  BuilderConfig cfg;
  cfg.set_device(DeviceType::kCUDA);
  cfg.set_flag(BuilderFlag::kFP16);
  PassContext ctx = context_for(g, cfg);
  testing::run_pass(g, reduce_precision, ctx);
  EXPECT_EQ(a->dtype, DataType::kFloat32) << ir::dump(g);
  ASSERT_NE(a->producer, nullptr);
  EXPECT_EQ(a->producer->op_type, "Cast");
  ASSERT_EQ(a->producer->inputs.size(), 1u);
  EXPECT_EQ(a->producer->inputs[0]->dtype, DataType::kFloat16);
  EXPECT_EQ(a->producer->inputs[0]->producer->name, "relu");
  Tensor xin = test::random_tensor(DataType::kFloat32, {2, 3}, rng, -2, 2);
  auto want = testing::execute(*before, {{"x", xin}});
  auto got = testing::execute(g, {{"x", xin}});
  testing::expect_outputs_close(*before, got, want, 2e-3, 2e-3);
}

TEST(Passes, ReducePrecisionGivesBodiesAFloat32CopyOfA16BitInput) {
  // With FP16 input I/O the engine input x turns FP16; the Loop body reading x by name
  // (and the inner Loop reading it two levels down) stays FP32, so it reads a Cast of x.
  std::mt19937 rng(7);
  ir::Graph g;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{2, 3}).value();
  g.inputs.push_back(x);
  ir::Value* y = g.add_value("y").value();
  g.add_node("Relu", {x}, {y}, "relu");
  ir::Value* outer = testing::add_loop_reading(g, x, y);
  ir::Node* loop = outer->producer;
  ir::Graph& body = *loop->attrs.find("body")->g;
  ir::Value* inner = testing::add_loop_reading(body, body.find_value("x"), body.find_value("cur"), 2);
  body.outputs.push_back(inner);  // a scan output: the inner loop's result per iteration
  ir::Value* scanned = g.add_unique_value("scanned", DataType::kFloat32);
  loop->outputs.push_back(scanned);
  scanned->producer = loop;
  g.outputs = {y, outer, scanned};
  auto before = g.clone();
  BuilderConfig cfg;
  cfg.set_device(DeviceType::kCUDA);
  cfg.set_flag(BuilderFlag::kFP16);
  cfg.set_io_dtypes(DataType::kFloat16, DataType::kFloat32);
  PassContext ctx = context_for(g, cfg);
  testing::run_pass(g, reduce_precision, ctx);
  EXPECT_EQ(x->dtype, DataType::kFloat16);  // the binding is 16-bit, as asked
  EXPECT_EQ(body.outer_references(), std::vector<std::string>{"x_fp32"}) << ir::dump(g);
  ir::Value* copy = g.find_value("x_fp32");
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(copy->dtype, DataType::kFloat32);
  ASSERT_NE(copy->producer, nullptr);
  EXPECT_EQ(copy->producer->op_type, "Cast");
  EXPECT_EQ(copy->producer->inputs[0], x);
  EXPECT_EQ(body.find_value("x"), nullptr);
  EXPECT_EQ(body.find_value("x_fp32")->dtype, DataType::kFloat32);
  const ir::Graph& inner_body = *inner->producer->attrs.find("body")->g;
  EXPECT_EQ(inner_body.outer_references(), std::vector<std::string>{"x_fp32"});
  EXPECT_EQ(inner_body.find_value("x_fp32")->dtype, DataType::kFloat32);
  Tensor x16 = test::random_tensor(DataType::kFloat16, {2, 3}, rng, -2, 2);
  Tensor x32 = Tensor::from_vector<float>(DataType::kFloat32, {2, 3}, x16.to_float_vector());
  auto want = testing::execute(*before, {{"x", x32}});
  auto got = testing::execute(g, {{"x", x16}});
  testing::expect_outputs_close(*before, got, want, 2e-3, 2e-3);
  for (auto& [name, t] : got) EXPECT_EQ(t.dtype(), DataType::kFloat32) << name;
}

}  // namespace kiln::passes

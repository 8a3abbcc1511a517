// nhwc_layout and kiln FusedElementwise: a fused elementwise program between convs stays in the
// channels-last region (its per-channel constants permuted like a binary op's), so no Transpose
// sits between the convs; constants that cannot be permuted keep it outside. Numerically equal.
#include <gtest/gtest.h>

#include <random>

#include "harness/op_harness.h"
#include "harness/scoped_env.h"
#include "ops/layout.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {

namespace {

using testing::context_for;
using testing::op_types;
using testing::run_graph;
using testing::run_pass;

struct G {
  ir::Graph g;
  std::mt19937 rng{9};

  ir::Value* input(const std::string& name, Shape s) {
    ir::Value* v = g.add_value(name, DataType::kFloat32, std::move(s)).value();
    g.inputs.push_back(v);
    return v;
  }
  ir::Value* random(const Dims& d) { return g.add_constant("w", test::random_tensor(DataType::kFloat32, d, rng)); }
  ir::Node* node(const std::string& type, const std::vector<ir::Value*>& ins, const std::string& domain = "") {
    ir::Value* o = g.add_unique_value("t");
    ir::Node* n = g.add_node(type, ins, {o}, g.unique_name(type));
    n->domain = domain;
    n->opset = domain.empty() ? 17 : 1;
    return n;
  }
  ir::Value* conv(ir::Value* x, int64_t m, int64_t c) {
    ir::Node* n = node("Conv", {x, random({m, c, 3, 3}), random({m})});
    n->attrs.set("pads", ir::Attribute::from_ints({1, 1, 1, 1}));
    return n->outputs[0];
  }
  ir::Value* fused(const std::vector<ir::Value*>& ins, const std::string& program) {
    ir::Node* n = node("FusedElementwise", ins, "kiln");
    n->attrs.set("program", ir::Attribute::from_string(program));
    g.opset_imports.emplace("kiln", 1);
    return n->outputs[0];
  }
};

int count(const ir::Graph& g, const std::string& op) {
  auto ops = op_types(g);
  return static_cast<int>(std::count(ops.begin(), ops.end(), op));
}

PassContext half_cuda(const ir::Graph& g, BuilderConfig& cfg) {
  cfg.set_device(DeviceType::kCUDA);
  cfg.set_flag(BuilderFlag::kFP16);
  PassContext ctx = context_for(g, cfg);
  return ctx;
}

// nhwc_layout over g in an FP16 CUDA context, keeping g as it was (for expect_same);
// the test checks HasFatalFailure after it.
struct HalfNhwc {
  std::unique_ptr<ir::Graph> before;
  BuilderConfig cfg;
  PassContext ctx;
  explicit HalfNhwc(ir::Graph& g) : before(g.clone()), ctx(half_cuda(g, cfg)) { run_pass(g, nhwc_layout, ctx); }
  HalfNhwc(const HalfNhwc&) = delete;  // ctx points at cfg
  HalfNhwc& operator=(const HalfNhwc&) = delete;
};

void expect_same(const ir::Graph& before, const ir::Graph& after, const Dims& x, double tol) {
  std::mt19937 rng(4);
  Tensor xin = test::random_tensor(DataType::kFloat32, x, rng);
  auto want = run_graph(before, {{"x", xin}});
  auto got = run_graph(after, {{"x", xin}});
  for (ir::Value* o : before.outputs) {
    SCOPED_TRACE(o->name);
    EXPECT_EQ(got.at(o->name).dims(), want.at(o->name).dims());
    EXPECT_TRUE(test::tensors_close(got.at(o->name), want.at(o->name), tol, tol));
  }
}

}  // namespace

TEST(NhwcLayout, FusedElementwiseBetweenConvsStaysChannelsLast) {
  G b;
  ir::Value* x = b.input("x", Shape{Dim::symbol("N"), 3, 7, 5});
  ir::Value* c1 = b.conv(x, 4, 3);
  // Per-channel constants as [C,1,1] and [1,C,1,1], a full-size NCHW constant, a scalar immediate.
  ir::Value* f = b.fused({c1, b.random({4, 1, 1}), b.random({1, 4, 1, 1}), b.random({4, 7, 5})},
                         "v1; t0 = Mul(in0, in1); t1 = Add(t0, in2); t2 = Sub(t1, in3); t3 = Mul(t2, 0.5); "
                         "t4 = Sigmoid(t3)");
  b.g.outputs.push_back(b.conv(f, 2, 4));
  HalfNhwc run(b.g);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  // Into the region from x, and out to the graph output: none between the convs.
  EXPECT_EQ(count(b.g, "Transpose"), 2) << ir::dump(b.g);
  EXPECT_EQ(run.ctx.stats["nhwc_layers"], 3);
  for (auto& n : b.g.nodes()) {
    if (n->op_type != "FusedElementwise") continue;
    EXPECT_EQ(n->inputs[0]->producer->op_type, "Conv");
    EXPECT_EQ(n->inputs[1]->initializer->dims(), (Dims{1, 1, 1, 4}));
    EXPECT_EQ(n->inputs[2]->initializer->dims(), (Dims{1, 1, 1, 4}));
    EXPECT_EQ(n->inputs[3]->initializer->dims(), (Dims{1, 7, 5, 4}));
    EXPECT_EQ(n->outputs[0]->layout, ir::Layout::kNHWC);
    ASSERT_TRUE(n->outputs[0]->shape);
    EXPECT_EQ(shape_to_string(*n->outputs[0]->shape), "[N,7,5,4]");
    // The second conv has 4 input channels: it reads them zero-padded to 8.
    for (ir::Node* c : b.g.consumers(n->outputs[0])) EXPECT_EQ(c->op_type, "Pad");
  }
  expect_same(*run.before, b.g, {2, 3, 7, 5}, 1e-4);
}

TEST(NhwcLayout, FewInputChannelsArePaddedToEight) {
  // A 3-channel stem conv (group 1) with 48 outputs (3 x 3 x 3 x 48 FMAs a pixel: too many
  // for the direct NCHW-input conv) reads its NHWC input zero-padded to 8 channels with zero
  // weight channels; a 48-channel conv is left as is.
  G b;
  ir::Value* x = b.input("x", Shape{Dim::symbol("N"), 3, 9, 7});
  ir::Value* c1 = b.conv(x, 48, 3);
  b.g.outputs.push_back(b.conv(c1, 8, 48));
  HalfNhwc run(b.g);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  EXPECT_EQ(count(b.g, "Pad"), 1) << ir::dump(b.g);
  int convs = 0;
  for (auto& n : b.g.nodes()) {
    if (n->op_type != "Conv") continue;
    const Dims w = n->inputs[1]->initializer->dims();
    if (convs++ == 0) {
      EXPECT_EQ(n->inputs[0]->producer->op_type, "Pad");
      EXPECT_EQ(shape_to_string(*n->inputs[0]->shape), "[N,9,7,8]");
      EXPECT_EQ(w, (Dims{48, 3, 3, 8}));
      EXPECT_FALSE(n->attrs.has(ops::kNchwInputAttr));
      // The added weight channels are zero.
      const Tensor& t = *n->inputs[1]->initializer;
      for (int64_t i = 0; i < t.numel(); ++i)
        if (i % 8 >= 3) ASSERT_EQ(t.get_as_double(i), 0.0) << i;
    } else {
      EXPECT_EQ(w, (Dims{8, 3, 3, 48}));
    }
  }
  EXPECT_EQ(convs, 2);
  expect_same(*run.before, b.g, {2, 3, 9, 7}, 1e-4);
}

TEST(NhwcLayout, SmallStemReadsTheNchwInput) {
  // A 3-channel stem with 16 outputs (YOLOv8n's: 432 FMAs a pixel) reads the model's NCHW
  // input itself (kiln.nchw_input, run by kiln's direct conv): no Transpose or Pad before it,
  // its weights OHWI with 3 channels; its output is NHWC for the next conv.
  G b;
  ir::Value* x = b.input("x", Shape{Dim::symbol("N"), 3, 9, 7});
  ir::Node* stem = b.node("Conv", {x, b.random({16, 3, 3, 3}), b.random({16})});
  stem->attrs.set("pads", ir::Attribute::from_ints({1, 1, 1, 1}));
  stem->attrs.set("strides", ir::Attribute::from_ints({2, 2}));
  b.g.outputs.push_back(b.conv(stem->outputs[0], 8, 16));
  HalfNhwc run(b.g);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  EXPECT_EQ(count(b.g, "Pad"), 0) << ir::dump(b.g);
  EXPECT_EQ(count(b.g, "Transpose"), 1) << ir::dump(b.g);  // the graph output's only
  EXPECT_EQ(stem->inputs[0], x);
  EXPECT_EQ(stem->attrs.get_int(ops::kNchwInputAttr, 0), 1);
  EXPECT_EQ(stem->inputs[1]->initializer->dims(), (Dims{16, 3, 3, 3}));
  EXPECT_EQ(shape_to_string(*stem->outputs[0]->shape), "[N,5,4,16]");
  EXPECT_EQ(stem->outputs[0]->layout, ir::Layout::kNHWC);
  expect_same(*run.before, b.g, {2, 3, 9, 7}, 1e-4);

  // With a 7x7 window and 64 outputs (ResNet-50's stem, 9408 FMAs a pixel) it is padded instead.
  G r;
  ir::Value* rx = r.input("x", Shape{Dim::symbol("N"), 3, 16, 16});
  ir::Node* big = r.node("Conv", {rx, r.random({64, 3, 7, 7}), r.random({64})});
  big->attrs.set("pads", ir::Attribute::from_ints({3, 3, 3, 3}));
  r.g.outputs.push_back(r.conv(big->outputs[0], 8, 64));
  HalfNhwc rrun(r.g);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  EXPECT_FALSE(big->attrs.has(ops::kNchwInputAttr));
  EXPECT_EQ(count(r.g, "Pad"), 1) << ir::dump(r.g);
}

TEST(NhwcLayout, FusedElementwiseWithARowConstantStaysOutside) {
  // A rank-1 [W] constant broadcasts over W, which NHWC puts in the middle: no join.
  G b;
  ir::Value* x = b.input("x", Shape{2, 3, 6, 5});
  ir::Value* c1 = b.conv(x, 4, 3);
  ir::Value* f = b.fused({c1, b.random({5})}, "v1; t0 = Add(in0, in1); t1 = Relu(t0)");
  b.g.outputs.push_back(b.conv(f, 2, 4));
  HalfNhwc run(b.g);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  EXPECT_EQ(count(b.g, "Transpose"), 4) << ir::dump(b.g);
  expect_same(*run.before, b.g, {2, 3, 6, 5}, 1e-4);
}

TEST(NhwcLayout, HalfPipelineFusesElementwiseChainsBetweenConvs) {
  // fuse_elementwise now fuses rank-4 chains in FP16 conv nets; nhwc_layout carries them.
  G b;
  ir::Value* x = b.input("x", Shape{2, 3, 9, 7});
  ir::Value* c1 = b.conv(x, 8, 3);
  ir::Value* m = b.node("Mul", {c1, b.random({8, 1, 1})})->outputs[0];
  ir::Value* a = b.node("Add", {m, b.random({1, 8, 1, 1})})->outputs[0];
  ir::Value* s = b.node("Sigmoid", {a})->outputs[0];
  ir::Value* r = b.node("Mul", {s, c1})->outputs[0];
  b.g.outputs.push_back(b.conv(r, 4, 8));
  std::unique_ptr<ir::Graph> before(b.g.clone());
  BuilderConfig cfg;
  PassContext ctx = half_cuda(b.g, cfg);
  Status st = run_pipeline(b.g, ctx);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(count(b.g, "FusedElementwise"), 1) << ir::dump(b.g);
  // Out to the graph output only: the 3-channel stem reads x as NCHW (kiln.nchw_input).
  EXPECT_EQ(count(b.g, "Transpose"), 1) << ir::dump(b.g);
  for (auto& n : b.g.nodes())
    if (n->op_type == "FusedElementwise") EXPECT_EQ(n->outputs[0]->layout, ir::Layout::kNHWC);
  expect_same(*before, b.g, {2, 3, 9, 7}, 3e-2);
}

// FP32 engines with TF32 allowed go channels-last too; KILN_NHWC_FP32=0 or --no-tf32
// keeps them NCHW.
TEST(NhwcLayout, Float32JoinsWithTf32) {
  struct Case {
    const char* env;
    bool tf32;
    bool joins;
  };
  for (Case k : {Case{nullptr, true, true}, Case{"0", true, false}, Case{nullptr, false, false}}) {
    SCOPED_TRACE(std::string("KILN_NHWC_FP32=") + (k.env ? k.env : "(unset)") + (k.tf32 ? " tf32" : " no tf32"));
    test::ScopedEnv env("KILN_NHWC_FP32", k.env);
    G b;
    ir::Value* x = b.input("x", Shape{2, 8, 6, 5});
    ir::Node* relu = b.node("Relu", {b.conv(x, 8, 8)});
    b.g.outputs.push_back(b.conv(relu->outputs[0], 4, 8));
    std::unique_ptr<ir::Graph> before(b.g.clone());
    BuilderConfig cfg;
    cfg.set_device(DeviceType::kCUDA);  // FP32; TF32 on by default
    if (!k.tf32) cfg.clear_flag(BuilderFlag::kTF32);
    PassContext ctx = context_for(b.g, cfg);
    run_pass(b.g, nhwc_layout, ctx);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    EXPECT_EQ(ctx.stats["nhwc_layers"], k.joins ? 3 : 0) << ir::dump(b.g);
    EXPECT_EQ(count(b.g, "Transpose"), k.joins ? 2 : 0);
    expect_same(*before, b.g, {2, 8, 6, 5}, 1e-4);
  }
}

// A lone FP32 conv (ViT's patch embedding) stays NCHW: FP16 engines still convert it.
TEST(NhwcLayout, Float32LoneConvStaysNchw) {
  for (bool fp16 : {false, true}) {
    SCOPED_TRACE(fp16 ? "fp16" : "fp32");
    G b;
    ir::Value* x = b.input("x", Shape{2, 8, 6, 5});
    ir::Node* relu = b.node("Relu", {b.conv(x, 8, 8)});
    b.g.outputs.push_back(relu->outputs[0]);
    BuilderConfig cfg;
    cfg.set_device(DeviceType::kCUDA);
    if (fp16) cfg.set_flag(BuilderFlag::kFP16);
    PassContext ctx = context_for(b.g, cfg);
    run_pass(b.g, nhwc_layout, ctx);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    EXPECT_EQ(ctx.stats["nhwc_layers"] > 0, fp16) << ir::dump(b.g);
  }
}

}  // namespace kiln::passes

// patchify_conv: a Conv with kernel == stride (ViT's patch embedding) becomes Reshape/Transpose +
// MatMulBias on CUDA engines; ViT's reshape(N, M, P).transpose(1, 2) after it folds into one
// Reshape of the GEMM's output. Convs with pads, stride != kernel, groups, dilations, sizes that are
// no multiple of the kernel, 1x1 kernels, convs inside conv nets, and CPU engines stay. Each
// rewritten graph gives the reference outputs on random inputs (static and symbolic batch).
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
using testing::run_pass;

using Ops = std::vector<std::string>;

struct G {
  ir::Graph g;
  DataType dt = DataType::kFloat32;
  std::mt19937 rng{7};

  ir::Value* input(const std::string& name, Shape s) {
    ir::Value* v = g.add_value(name, dt, std::move(s)).value();
    g.inputs.push_back(v);
    return v;
  }
  ir::Value* random(const Dims& d) { return g.add_constant("w", test::random_tensor(dt, d, rng)); }
  ir::Value* ints(std::vector<int64_t> v) {
    return g.add_constant("i", Tensor::from_vector<int64_t>(DataType::kInt64, {static_cast<int64_t>(v.size())}, v));
  }
  ir::Node* node(const std::string& type, const std::vector<ir::Value*>& ins, const ir::Attributes& a = {},
                 const std::string& domain = "") {
    ir::Value* o = g.add_unique_value("t");
    ir::Node* n = g.add_node(type, ins, {o}, g.unique_name(type));
    n->attrs = a;
    n->domain = domain;
    n->opset = domain.empty() ? 17 : 1;
    return n;
  }
  ir::Value* op(const std::string& type, const std::vector<ir::Value*>& ins, const ir::Attributes& a = {}) {
    return node(type, ins, a)->outputs[0];
  }
  // Conv(x, w[m, c, kernel...], b) with strides (default: the kernel) and extra attributes.
  ir::Node* conv(ir::Value* x, int64_t m, std::vector<int64_t> kernel, bool bias = true, ir::Attributes a = {},
                 int64_t c = 3) {
    Dims wd = {m, c};
    wd.insert(wd.end(), kernel.begin(), kernel.end());
    if (!a.has("strides")) a.set("strides", ir::Attribute::from_ints(kernel));
    a.set("kernel_shape", ir::Attribute::from_ints(kernel));
    std::vector<ir::Value*> ins = {x, random(wd)};
    if (bias) ins.push_back(random({m}));
    return node("Conv", ins, a);
  }
};

ir::Attributes attr(const std::string& k, std::vector<int64_t> v) {
  ir::Attributes a;
  a.set(k, ir::Attribute::from_ints(std::move(v)));
  return a;
}

ir::Attributes perm(std::vector<int64_t> p) { return attr("perm", std::move(p)); }

ir::Attributes axis(int64_t a) {
  ir::Attributes r;
  r.set("axis", ir::Attribute::from_int(a));
  return r;
}

// Runs patchify_conv (and eliminate_dead_nodes, as the pipeline does next) for `device`, checks
// the op types, and compares outputs on inputs of `dims` with the graph before.
void expect_rewrite(G& b, const Ops& want_ops, const std::map<std::string, Dims>& dims,
                    DeviceType device = DeviceType::kCUDA, double tol = 1e-4, bool fp16_engine = true) {
  std::unique_ptr<ir::Graph> before(b.g.clone());
  BuilderConfig cfg;
  cfg.set_device(device);
  if (fp16_engine) cfg.set_flag(BuilderFlag::kFP16);
  PassContext ctx = context_for(b.g, cfg);
  run_pass(b.g, patchify_conv, ctx);
  if (::testing::Test::HasFatalFailure()) return;
  run_pass(b.g, eliminate_dead_nodes, ctx);
  if (::testing::Test::HasFatalFailure()) return;
  EXPECT_EQ(op_types(b.g), want_ops) << ir::dump(b.g);
  std::mt19937 rng(3);
  std::map<std::string, Tensor> in;
  for (ir::Value* v : before->inputs) in[v->name] = test::random_tensor(v->dtype, dims.at(v->name), rng);
  auto want = run_graph(*before, in);
  auto got = run_graph(b.g, in);
  for (ir::Value* o : before->outputs) {
    SCOPED_TRACE(o->name);
    ASSERT_TRUE(got.count(o->name));
    EXPECT_EQ(got.at(o->name).dims(), want.at(o->name).dims());
    EXPECT_TRUE(test::tensors_close(got.at(o->name), want.at(o->name), tol, tol));
  }
}

const Ops kPatchified = {"Reshape", "Transpose", "Reshape", "MatMulBias", "Reshape", "Transpose"};

}  // namespace

TEST(PatchifyConv, VitPatchEmbeddingBecomesGemm) {
  G b;
  ir::Value* x = b.input("x", Shape{2, 3, 32, 24});
  ir::Node* c = b.conv(x, 16, {8, 8});
  b.g.outputs.push_back(c->outputs[0]);
  const std::string name = c->name;
  expect_rewrite(b, kPatchified, {{"x", {2, 3, 32, 24}}});
  const ir::Node* mm = b.g.nodes()[3].get();
  EXPECT_EQ(mm->domain, "kiln");
  EXPECT_EQ(fused_from(*mm), (std::vector<std::string>{name}));
  EXPECT_EQ(mm->inputs[1]->initializer->dims(), (Dims{3 * 8 * 8, 16}));
  EXPECT_EQ(b.g.outputs[0]->producer->attrs.get_ints("perm"), (std::vector<int64_t>{0, 3, 1, 2}));
}

TEST(PatchifyConv, SymbolicBatchNonSquareKernelAndNoBias) {
  G b;
  ir::Value* x = b.input("x", Shape{Dim::symbol("N"), 3, 12, 10});
  b.g.outputs.push_back(b.conv(x, 5, {4, 2}, /*bias=*/false)->outputs[0]);
  expect_rewrite(b, {"Reshape", "Transpose", "Reshape", "MatMul", "Reshape", "Transpose"}, {{"x", {3, 3, 12, 10}}});
}

TEST(PatchifyConv, OneAndThreeSpatialDims) {
  {
    G b;
    ir::Value* x = b.input("x", Shape{Dim::symbol("N"), 3, 21});
    b.g.outputs.push_back(b.conv(x, 6, {7})->outputs[0]);
    expect_rewrite(b, kPatchified, {{"x", {2, 3, 21}}});
  }
  {
    G b;
    ir::Value* x = b.input("x", Shape{2, 3, 4, 6, 4});
    b.g.outputs.push_back(b.conv(x, 6, {2, 3, 2})->outputs[0]);
    expect_rewrite(b, kPatchified, {{"x", {2, 3, 4, 6, 4}}});
  }
}

TEST(PatchifyConv, Float16Graph) {
  G b;
  b.dt = DataType::kFloat16;
  ir::Value* x = b.input("x", Shape{Dim::symbol("N"), 3, 16, 16});
  b.g.outputs.push_back(b.conv(x, 8, {4, 4})->outputs[0]);
  expect_rewrite(b, kPatchified, {{"x", {2, 3, 16, 16}}}, DeviceType::kCUDA, 2e-2);
}

// torchvision ViT: x = conv(x).reshape(n, hidden, n_h * n_w).permute(0, 2, 1), n from x.shape.
TEST(PatchifyConv, VitFlattenTransposeBecomesOneReshape) {
  for (int variant = 0; variant < 4; ++variant) {
    SCOPED_TRACE(variant);
    G b;
    ir::Value* x = b.input("x", Shape{Dim::symbol("batch"), 3, 16, 32});
    ir::Value* y = b.conv(x, 6, {8, 8})->outputs[0];  // M = 6, P = 8
    ir::Value* shape = nullptr;
    if (variant == 0) {  // as exported: Concat(Unsqueeze(Gather(Shape(x), 0)), [8], [8])
      ir::Value* n =
          b.op("Gather",
               {b.op("Shape", {x}), b.g.add_constant("zero", Tensor::from_vector<int64_t>(DataType::kInt64, {}, {0}))});
      shape = b.op("Concat", {b.op("Unsqueeze", {n, b.ints({0})}), b.ints({6}), b.ints({8})}, axis(0));
    } else {
      shape = b.ints(variant == 1   ? std::vector<int64_t>{0, 6, -1}
                     : variant == 2 ? std::vector<int64_t>{-1, 6, 8}
                                    : std::vector<int64_t>{0, 0, 8});
    }
    ir::Value* r = b.op("Reshape", {y, shape});
    b.g.outputs.push_back(b.op("Relu", {b.op("Transpose", {r}, perm({0, 2, 1}))}));
    expect_rewrite(b, {"Reshape", "Transpose", "Reshape", "MatMulBias", "Reshape", "Relu"}, {{"x", {3, 3, 16, 32}}});
  }
}

TEST(PatchifyConv, FlattenWithAnotherShapeKeepsTheOutputTranspose) {
  // [N, 4, 16]: not [N, M, P], so the Reshape and Transpose stay after the NCHW output.
  G b;
  ir::Value* x = b.input("x", Shape{2, 3, 16, 32});
  ir::Value* y = b.conv(x, 8, {8, 8})->outputs[0];
  ir::Value* r = b.op("Reshape", {y, b.ints({0, 4, -1})});
  b.g.outputs.push_back(b.op("Transpose", {r}, perm({0, 2, 1})));
  Ops want = kPatchified;
  want.insert(want.end(), {"Reshape", "Transpose"});
  expect_rewrite(b, want, {{"x", {2, 3, 16, 32}}});
}

TEST(PatchifyConv, FusedConvWithoutActivation) {
  for (bool act : {false, true}) {
    G b;
    ir::Value* x = b.input("x", Shape{2, 3, 8, 8});
    ir::Attributes a = attr("strides", {4, 4});
    if (act) a.set("activation", ir::Attribute::from_string("Relu"));
    b.g.outputs.push_back(
        b.node("FusedConv", {x, b.random({4, 3, 4, 4}), b.random({4})}, a, "com.microsoft")->outputs[0]);
    expect_rewrite(b, act ? Ops{"FusedConv"} : kPatchified, {{"x", {2, 3, 8, 8}}});
  }
}

TEST(PatchifyConv, LeavesOtherConvsAlone) {
  struct Case {
    const char* what;
    std::vector<int64_t> kernel;
    ir::Attributes attrs;
    Dims x;
  };
  ir::Attributes grouped = attr("strides", {4, 4});
  grouped.set("group", ir::Attribute::from_int(3));
  const std::vector<Case> cases = {
      {"pads", {4, 4}, attr("pads", {1, 1, 1, 1}), {1, 3, 8, 8}},
      {"stride != kernel", {4, 4}, attr("strides", {2, 2}), {1, 3, 8, 8}},
      {"dilation", {2, 2}, attr("dilations", {2, 2}), {1, 3, 8, 8}},
      {"group", {4, 4}, grouped, {1, 3, 8, 8}},
      {"H not a multiple", {4, 4}, {}, {1, 3, 10, 8}},
      {"1x1", {1, 1}, {}, {1, 3, 8, 8}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    G b;
    ir::Value* x = b.input("x", shape_from_dims(c.x));
    b.g.outputs.push_back(b.conv(x, 6, c.kernel, true, c.attrs, c.what == std::string("group") ? 1 : 3)->outputs[0]);
    expect_rewrite(b, {"Conv"}, {{"x", c.x}});
  }
}

TEST(PatchifyConv, LeavesCpuEnginesAndConvNetsAlone) {
  {
    G b;
    ir::Value* x = b.input("x", Shape{1, 3, 8, 8});
    b.g.outputs.push_back(b.conv(x, 4, {4, 4})->outputs[0]);
    expect_rewrite(b, {"Conv"}, {{"x", {1, 3, 8, 8}}}, DeviceType::kCPU);
  }
  {
    // A downsampling conv between convs stays in the channels-last region nhwc_layout makes.
    G b;
    ir::Value* x = b.input("x", Shape{1, 3, 8, 8});
    ir::Value* y = b.conv(x, 4, {3, 3}, true, attr("strides", {1, 1}))->outputs[0];
    ir::Value* d = b.conv(b.op("Relu", {y}), 4, {2, 2}, true, {}, 4)->outputs[0];
    b.g.outputs.push_back(d);
    expect_rewrite(b, {"Conv", "Relu", "Conv"}, {{"x", {1, 3, 8, 8}}});
  }
  {
    G b;
    ir::Value* x = b.input("x", Shape{1, 3, 8, 8});
    ir::Value* y = b.conv(x, 4, {2, 2})->outputs[0];
    b.g.outputs.push_back(b.conv(b.op("Relu", {y}), 4, {1, 1}, true, {}, 4)->outputs[0]);
    expect_rewrite(b, {"Conv", "Relu", "Conv"}, {{"x", {1, 3, 8, 8}}});
  }
}

// FP32 CUDA engines patchify too, with a GEMM marked exact FP32 (no TF32: the TF32 form of
// ViT's patch embedding moved its output past 1e-3 of PyTorch's); half engines' GEMMs are not.
TEST(PatchifyConv, Fp32GemmIsMarkedExact) {
  for (bool fp16 : {false, true}) {
    SCOPED_TRACE(fp16 ? "fp16 engine" : "fp32 engine");
    G b;
    ir::Value* x = b.input("x", Shape{2, 3, 16, 16});
    b.g.outputs.push_back(b.conv(x, 8, {4, 4})->outputs[0]);
    expect_rewrite(b, kPatchified, {{"x", {2, 3, 16, 16}}}, DeviceType::kCUDA, 1e-4, fp16);
    const ir::Node* mm = b.g.nodes()[3].get();
    ASSERT_EQ(mm->op_type, "MatMulBias");
    EXPECT_EQ(mm->attrs.get_int(ops::kExactFp32Attr, 0), fp16 ? 0 : 1);
  }
}

// The whole FP16 CUDA pipeline on a ViT-like stem: no Conv left, one Transpose (the patch
// gather), the class token Concat and the position Add on [N, 1 + P, M].
TEST(PatchifyConv, InTheHalfCudaPipeline) {
  G b;
  ir::Value* x = b.input("x", Shape{Dim::symbol("batch"), 3, 32, 32});
  ir::Value* y = b.conv(x, 12, {8, 8})->outputs[0];
  ir::Value* n = b.op("Gather", {b.op("Shape", {x}),
                                 b.g.add_constant("zero", Tensor::from_vector<int64_t>(DataType::kInt64, {}, {0}))});
  ir::Value* nn = b.op("Unsqueeze", {n, b.ints({0})});
  ir::Value* shape = b.op("Concat", {nn, b.ints({12}), b.ints({-1})}, axis(0));
  ir::Value* tokens = b.op("Transpose", {b.op("Reshape", {y, shape})}, perm({0, 2, 1}));
  ir::Value* cls_shape = b.op("Concat", {nn, b.ints({1, 12})}, axis(0));
  ir::Value* cls = b.op("Expand", {b.random({1, 1, 12}), cls_shape});
  ir::Value* cat = b.op("Concat", {cls, tokens}, axis(1));
  b.g.outputs.push_back(b.op("Add", {cat, b.random({1, 17, 12})}));
  std::unique_ptr<ir::Graph> before(b.g.clone());
  BuilderConfig cfg;
  cfg.set_device(DeviceType::kCUDA);
  cfg.set_flag(BuilderFlag::kFP16);
  PassContext ctx = context_for(b.g, cfg);
  Status s = run_pipeline(b.g, ctx);
  ASSERT_TRUE(s.ok()) << s.to_string();
  auto ops = op_types(b.g);
  EXPECT_EQ(std::count(ops.begin(), ops.end(), "Conv"), 0) << ir::dump(b.g);
  EXPECT_EQ(std::count(ops.begin(), ops.end(), "Transpose"), 1) << ir::dump(b.g);
  EXPECT_EQ(std::count(ops.begin(), ops.end(), "MatMulBias"), 1) << ir::dump(b.g);
  EXPECT_EQ(ctx.stats["patchified_convs_flattened"], 1);
  std::mt19937 rng(5);
  Tensor xin = test::random_tensor(DataType::kFloat32, {3, 3, 32, 32}, rng);
  auto want = run_graph(*before, {{"x", xin}});
  auto got = run_graph(b.g, {{"x", xin}});
  const std::string out = before->outputs[0]->name;
  EXPECT_EQ(got.at(out).dims(), (Dims{3, 17, 12}));
  EXPECT_TRUE(test::tensors_close(got.at(out), want.at(out), 3e-2, 3e-2));
}

}  // namespace kiln::passes

// Golden tests for fuse_attention: BERT-style attention (head split by Reshape +
// Transpose, scale on both operands, additive mask, IsNaN guard, head merge)
// becomes one FusedAttention whose output matches the original graph on random
// inputs; producers read only by Shape nodes stay and are shape-only; patterns
// with an extra reader or a non-last-axis softmax are left alone. merge_qkv: the
// fused attention's three projections become one GEMM read through Slice views.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ir/shape_only.h"
#include "ops/attention/attn_view.h"
#include "ops/op.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {

namespace {

using testing::context_for;
using testing::fused_from;
using testing::op_types;
using testing::run_graph;

constexpr int64_t kS = 12, kH = 2, kD = 8, kE = kH * kD;

Tensor random_tensor(DataType dt, const Dims& d, unsigned seed, double lo = -1, double hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  Tensor t = Tensor::empty(dt, d);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_from_double(i, u(rng));
  return t;
}

struct G {
  ir::Graph g;
  ir::Value* op(const std::string& type, const std::vector<ir::Value*>& ins, const ir::Attributes& a = {}) {
    ir::Value* o = g.add_unique_value("t");
    ir::Node* n = g.add_node(type, ins, {o}, g.unique_name(type));
    n->attrs = a;
    n->opset = 17;
    return o;
  }
  ir::Value* c(Tensor t) { return g.add_constant("c", std::move(t)); }
  static ir::Attributes perm(std::vector<int64_t> p) {
    ir::Attributes a;
    a.set("perm", ir::Attribute::from_ints(std::move(p)));
    return a;
  }
};

struct Options {
  bool mask = true;
  bool nan_guard = true;
  bool shape_reader = true;   // a Shape node reads the transposed Q (as transformers exports do)
  bool extra_reader = false;  // the softmax output is also a graph output: no fusion
  int64_t softmax_axis = -1;
  int64_t head = kD;  // head size (64/128 run the register-resident kernel, fused at any batch)
};

// x:[batch, S, E] -> BERT self-attention -> y:[batch, S, E]
void build(G& b, const Options& o) {
  const int64_t kD = o.head, kE = kH * o.head;
  ir::Graph& g = b.g;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{Dim::symbol("batch"), kS, kE}).value();
  g.inputs.push_back(x);
  ir::Value* mask = nullptr;
  if (o.mask) {
    mask = g.add_value("mask", DataType::kFloat32, Shape{Dim::symbol("batch"), 1, 1, kS}).value();
    g.inputs.push_back(mask);
  }
  ir::Value* split = b.c(Tensor::from_vector<int64_t>(DataType::kInt64, {4}, {0, 0, kH, kD}));
  auto proj = [&](unsigned seed) {
    ir::Value* w = b.c(random_tensor(DataType::kFloat32, {kE, kE}, seed));
    return b.op("Reshape", {b.op("MatMul", {x, w}), split});
  };
  ir::Value* sq = b.c(Tensor::from_vector<float>(DataType::kFloat32, {}, {std::pow(8.f, -0.25f)}));
  ir::Value* qt = b.op("Transpose", {proj(1)}, G::perm({0, 2, 1, 3}));
  ir::Value* q = b.op("Mul", {qt, sq});
  ir::Value* k = b.op("Mul", {b.op("Transpose", {proj(2)}, G::perm({0, 2, 3, 1})), sq});
  ir::Value* v = b.op("Transpose", {proj(3)}, G::perm({0, 2, 1, 3}));
  ir::Value* s = b.op("MatMul", {q, k});
  if (mask) s = b.op("Add", {s, mask});
  ir::Attributes ax;
  ax.set("axis", ir::Attribute::from_int(o.softmax_axis));
  ir::Value* p = b.op("Softmax", {s}, ax);
  if (o.extra_reader) g.outputs.push_back(p);
  if (o.nan_guard) {
    ir::Value* zero = b.c(Tensor::from_vector<float>(DataType::kFloat32, {}, {0.f}));
    p = b.op("Where", {b.op("IsNaN", {p}), zero, p});
  }
  ir::Value* a = b.op("MatMul", {p, v});
  ir::Value* merged = b.op("Transpose", {a}, G::perm({0, 2, 1, 3}));
  ir::Value* shape3;
  if (o.shape_reader) {
    // [batch, S, E] from Shape(qt) = [batch, H, S, D]: Gather dims 0 and 2 then E.
    ir::Value* sh = b.op("Shape", {qt});
    ir::Attributes g0;
    g0.set("axis", ir::Attribute::from_int(0));
    ir::Value* bs = b.op("Gather", {sh, b.c(Tensor::from_vector<int64_t>(DataType::kInt64, {2}, {0, 2}))}, g0);
    ir::Attributes cat;
    cat.set("axis", ir::Attribute::from_int(0));
    shape3 = b.op("Concat", {bs, b.c(Tensor::from_vector<int64_t>(DataType::kInt64, {1}, {kE}))}, cat);
  } else {
    shape3 = b.c(Tensor::from_vector<int64_t>(DataType::kInt64, {3}, {0, 0, kE}));
  }
  g.outputs.push_back(b.op("Reshape", {merged, shape3}));
}

PassContext cuda_context(const ir::Graph& g, BuilderConfig& cfg) {
  cfg.set_device(DeviceType::kCUDA);
  cfg.set_flag(BuilderFlag::kFP16);
  PassContext ctx = context_for(g, cfg);
  return ctx;
}

// A profile over the batch of x [batch, kS, e] and its mask: opt and max batch as given.
void add_batch_profile(BuilderConfig& cfg, int64_t e, int64_t opt, int64_t max) {
  OptimizationProfile prof;
  EXPECT_TRUE(prof.set_shape("x", {1, kS, e}, {opt, kS, e}, {max, kS, e}).ok());
  EXPECT_TRUE(prof.set_shape("mask", {1, 1, 1, kS}, {opt, 1, 1, kS}, {max, 1, 1, kS}).ok());
  cfg.add_optimization_profile(prof);
}

// The graph's (last) FusedAttention node, or null.
const ir::Node* fused_attention_node(const ir::Graph& g) {
  const ir::Node* f = nullptr;
  for (auto& n : g.nodes())
    if (n->op_type == "FusedAttention") f = n.get();
  return f;
}

void check_numerics(const Options& o, const ir::Graph& before, const ir::Graph& after) {
  std::map<std::string, Tensor> in;
  in["x"] = random_tensor(DataType::kFloat32, {3, kS, kE}, 5, -2, 2);
  if (o.mask) {
    Tensor m = random_tensor(DataType::kFloat32, {3, 1, 1, kS}, 6, -4, 0);
    m.set_from_double(kS - 1, -INFINITY);  // a masked key
    in["mask"] = m;
  }
  auto want = run_graph(before, in);
  auto got = run_graph(after, in);
  ASSERT_EQ(want.size(), got.size());
  for (auto& [name, w] : want) {
    const Tensor& t = got.at(name);
    ASSERT_EQ(t.dims(), w.dims()) << name;
    for (int64_t i = 0; i < w.numel(); ++i)
      ASSERT_NEAR(t.get_as_double(i), w.get_as_double(i), 1e-4) << name << " at " << i;
  }
}

TEST(FuseAttention, BertAttentionBecomesOneNode) {
  for (bool mask : {true, false})
    for (bool guard : {true, false}) {
      Options o;
      o.mask = mask, o.nan_guard = guard;
      SCOPED_TRACE("mask " + std::to_string(mask) + " guard " + std::to_string(guard));
      G b;
      build(b, o);
      std::unique_ptr<ir::Graph> before(b.g.clone());
      BuilderConfig cfg;
      PassContext ctx = cuda_context(b.g, cfg);
      ASSERT_TRUE(infer_shapes(b.g, ctx).ok());
      Status s = fuse_attention(b.g, ctx);
      ASSERT_TRUE(s.ok()) << s.to_string();
      ASSERT_TRUE(ir::verify(b.g).ok()) << ir::dump(b.g);
      ASSERT_TRUE(infer_shapes(b.g, ctx).ok()) << ir::dump(b.g);
      auto ops = op_types(b.g);
      EXPECT_EQ(std::count(ops.begin(), ops.end(), "FusedAttention"), 1) << ir::dump(b.g);
      EXPECT_EQ(std::count(ops.begin(), ops.end(), "Softmax"), 0) << ir::dump(b.g);
      EXPECT_EQ(std::count(ops.begin(), ops.end(), "IsNaN"), 0) << ir::dump(b.g);
      EXPECT_EQ(ctx.stats["fused_attention"], 1);
      const ir::Node* f = fused_attention_node(b.g);
      ASSERT_NE(f, nullptr);
      EXPECT_NEAR(f->attrs.get_float("scale", 0), 1 / std::sqrt(8.0), 1e-6);
      EXPECT_EQ(f->attrs.get_int("zero_masked_rows", -1), guard ? 1 : 0);
      EXPECT_EQ(f->input(0)->producer->op_type, "MatMul");  // the projection, no transpose between
      EXPECT_GE(fused_from(*f).size(), mask ? 7u : 6u);
      // The Q transpose stays for the Shape node and never runs on the GPU.
      auto only = ir::shape_only_nodes(b.g);
      int transposes_left = 0;
      for (auto& n : b.g.nodes())
        if (n->op_type == "Transpose") {
          ++transposes_left;
          EXPECT_TRUE(only.count(n.get())) << n->describe();
        }
      EXPECT_EQ(transposes_left, 1);
      EXPECT_FALSE(only.count(f));
      check_numerics(o, *before, b.g);
    }
}

TEST(FuseAttention, NoShapeReaderLeavesNoTranspose) {
  Options o;
  o.shape_reader = false;
  G b;
  build(b, o);
  std::unique_ptr<ir::Graph> before(b.g.clone());
  BuilderConfig cfg;
  PassContext ctx = cuda_context(b.g, cfg);
  ASSERT_TRUE(infer_shapes(b.g, ctx).ok());
  ASSERT_TRUE(fuse_attention(b.g, ctx).ok());
  auto ops = op_types(b.g);
  EXPECT_EQ(std::count(ops.begin(), ops.end(), "Transpose"), 0) << ir::dump(b.g);
  EXPECT_EQ(std::count(ops.begin(), ops.end(), "FusedAttention"), 1);
  check_numerics(o, *before, b.g);
}

TEST(FuseAttention, SmallOptBatchStaysUnfused) {
  // Batch 1 at the opt shapes: too few query tiles for the flash kernel to win.
  for (int64_t opt : {1, 1000}) {
    Options o;
    G b;
    build(b, o);
    BuilderConfig cfg;
    add_batch_profile(cfg, kE, opt, 1000);
    PassContext ctx = cuda_context(b.g, cfg);
    ASSERT_TRUE(infer_shapes(b.g, ctx).ok());
    ASSERT_TRUE(fuse_attention(b.g, ctx).ok());
    auto ops = op_types(b.g);
    EXPECT_EQ(std::count(ops.begin(), ops.end(), "FusedAttention"), opt == 1 ? 0 : 1) << "opt batch " << opt;
    EXPECT_EQ(ctx.stats["attention_left_unfused_small"], opt == 1 ? 1 : 0);
  }
}

TEST(FuseAttention, HeadSize64FusesAtBatchOne) {
  // The register-resident kernel beats the unfused path even at batch 1.
  Options o;
  o.head = 64;
  G b;
  build(b, o);
  const int64_t E = kH * 64;
  BuilderConfig cfg;
  add_batch_profile(cfg, E, 1, 8);
  PassContext ctx = cuda_context(b.g, cfg);
  ASSERT_TRUE(infer_shapes(b.g, ctx).ok());
  ASSERT_TRUE(fuse_attention(b.g, ctx).ok());
  auto ops = op_types(b.g);
  EXPECT_EQ(std::count(ops.begin(), ops.end(), "FusedAttention"), 1) << ir::dump(b.g);
  EXPECT_EQ(ctx.stats["attention_left_unfused_small"], 0);
}

TEST(FuseAttention, Fp32EnginesFuseHeadSize64OnlyWithTf32) {
  // FP32 engines: the register kernel's split-bf16 FP32 path takes head size 64 where
  // TF32 is allowed; other head sizes, and --no-tf32, keep the matmuls.
  struct Case {
    int64_t head;
    bool tf32;
    int fused;
  };
  for (Case k : {Case{64, true, 1}, Case{64, false, 0}, Case{kD, true, 0}}) {
    Options o;
    o.head = k.head;
    G b;
    build(b, o);
    BuilderConfig cfg;
    add_batch_profile(cfg, kH * k.head, 8, 8);
    PassContext ctx = cuda_context(b.g, cfg);
    cfg.clear_flag(BuilderFlag::kFP16);
    if (!k.tf32) cfg.clear_flag(BuilderFlag::kTF32);
    ASSERT_TRUE(infer_shapes(b.g, ctx).ok());
    ASSERT_TRUE(fuse_attention(b.g, ctx).ok());
    auto ops = op_types(b.g);
    EXPECT_EQ(std::count(ops.begin(), ops.end(), "FusedAttention"), k.fused)
        << "head " << k.head << " tf32 " << k.tf32 << "\n"
        << ir::dump(b.g);
    EXPECT_EQ(std::count(ops.begin(), ops.end(), "Softmax"), 1 - k.fused);
  }
}

TEST(FuseAttention, NotFusedWhenPatternDiffers) {
  for (int variant = 0; variant < 4; ++variant) {
    Options o;
    if (variant == 0) o.extra_reader = true;  // the probabilities are an output too
    if (variant == 1) o.softmax_axis = 2;     // not the key axis
    G b;
    build(b, o);
    BuilderConfig cfg;
    PassContext ctx = cuda_context(b.g, cfg);
    if (variant == 2) cfg.set_device(DeviceType::kCPU);    // CPU engines keep the matmuls
    if (variant == 3) cfg.clear_flag(BuilderFlag::kFP16);  // FP32 engines keep head size 8's matmuls
    ASSERT_TRUE(infer_shapes(b.g, ctx).ok());
    ASSERT_TRUE(fuse_attention(b.g, ctx).ok());
    auto ops = op_types(b.g);
    EXPECT_EQ(std::count(ops.begin(), ops.end(), "FusedAttention"), 0) << "variant " << variant;
    EXPECT_EQ(std::count(ops.begin(), ops.end(), "Softmax"), 1) << "variant " << variant;
  }
}

}  // namespace
}  // namespace kiln::passes

namespace kiln::passes {
namespace {

// ONNX Attention -> FusedAttention (lower_attention): 3-D and 4-D, with and without a
// float mask (one row fully masked), same outputs as the Attention reference.
TEST(LowerAttention, OnnxAttentionBecomesFusedAttention) {
  for (int three_d : {1, 0})
    for (int with_mask : {1, 0}) {
      SCOPED_TRACE("3d " + std::to_string(three_d) + " mask " + std::to_string(with_mask));
      ir::Graph g;
      const int64_t B = 2, H = 3, S = 7, T = 9, D = 8;
      Shape qs = three_d ? Shape{Dim::symbol("batch"), S, H * D} : Shape{Dim::symbol("batch"), H, S, D};
      Shape ks = three_d ? Shape{Dim::symbol("batch"), T, H * D} : Shape{Dim::symbol("batch"), H, T, D};
      std::vector<ir::Value*> ins;
      for (auto [name, sh] : {std::pair{"q", qs}, {"k", ks}, {"v", ks}}) {
        ins.push_back(g.add_value(name, DataType::kFloat32, sh).value());
        g.inputs.push_back(ins.back());
      }
      Tensor m = random_tensor(DataType::kFloat32, {S, T}, 9, -2, 0);
      for (int64_t j = 0; j < T; ++j) m.set_from_double(2 * T + j, -INFINITY);  // row 2 sees nothing
      ins.push_back(with_mask ? g.add_constant("mask", m) : nullptr);
      ir::Value* y = g.add_value("y").value();
      ir::Node* n = g.add_node("Attention", ins, {y}, "attn");
      n->opset = 23;
      if (three_d) {
        n->attrs.set("q_num_heads", ir::Attribute::from_int(H));
        n->attrs.set("kv_num_heads", ir::Attribute::from_int(H));
      }
      n->attrs.set("scale", ir::Attribute::from_float(0.3f));
      g.outputs.push_back(y);
      std::unique_ptr<ir::Graph> before(g.clone());
      BuilderConfig cfg;
      PassContext ctx = cuda_context(g, cfg);
      ASSERT_TRUE(infer_shapes(g, ctx).ok());
      Status s = lower_attention(g, ctx);
      ASSERT_TRUE(s.ok()) << s.to_string();
      ASSERT_TRUE(ir::verify(g).ok()) << ir::dump(g);
      ASSERT_TRUE(infer_shapes(g, ctx).ok()) << ir::dump(g);
      EXPECT_EQ(op_types(g), (std::vector<std::string>{"FusedAttention"}));
      std::map<std::string, Tensor> in;
      Dims qd = three_d ? Dims{B, S, H * D} : Dims{B, H, S, D};
      Dims kd = three_d ? Dims{B, T, H * D} : Dims{B, H, T, D};
      in["q"] = random_tensor(DataType::kFloat32, qd, 1, -2, 2);
      in["k"] = random_tensor(DataType::kFloat32, kd, 2, -2, 2);
      in["v"] = random_tensor(DataType::kFloat32, kd, 3, -2, 2);
      auto want = run_graph(*before, in);
      auto got = run_graph(g, in);
      const Tensor &w = want.at("y"), &t = got.at("y");
      ASSERT_EQ(t.dims(), w.dims());
      for (int64_t i = 0; i < w.numel(); ++i) ASSERT_NEAR(t.get_as_double(i), w.get_as_double(i), 1e-5) << i;
    }
}

TEST(LowerAttention, CausalAndCachedFormsStayOnTheReference) {
  for (int variant = 0; variant < 2; ++variant) {
    ir::Graph g;
    std::vector<ir::Value*> ins;
    for (const char* name : {"q", "k", "v"}) {
      ins.push_back(g.add_value(name, DataType::kFloat32, Shape{1, 2, 4, 8}).value());
      g.inputs.push_back(ins.back());
    }
    ir::Value* y = g.add_value("y").value();
    std::vector<ir::Value*> outs = {y};
    if (variant == 1) {  // the present key is an output: the cache form
      outs.push_back(g.add_value("present_k").value());
      g.outputs.push_back(outs.back());
    }
    ir::Node* n = g.add_node("Attention", ins, outs, "attn");
    n->opset = 23;
    if (variant == 0) n->attrs.set("is_causal", ir::Attribute::from_int(1));
    g.outputs.insert(g.outputs.begin(), y);
    BuilderConfig cfg;
    PassContext ctx = cuda_context(g, cfg);
    ASSERT_TRUE(infer_shapes(g, ctx).ok());
    ASSERT_TRUE(lower_attention(g, ctx).ok());
    EXPECT_EQ(op_types(g), (std::vector<std::string>{"Attention"})) << "variant " << variant;
  }
}

// The state merge_qkv starts from: the graph of `o` (kept in `*before` as built, when
// given) with its attention fused for a CUDA FP16 engine with a batch profile of 1000.
struct FusedCase {
  G b;
  BuilderConfig cfg;
  PassContext ctx;
  const ir::Node* attn = nullptr;
};

void make_fused_case(FusedCase& c, const Options& o, std::unique_ptr<ir::Graph>* before = nullptr) {
  build(c.b, o);
  if (before) *before = c.b.g.clone();
  add_batch_profile(c.cfg, kE, 1000, 1000);
  c.ctx = cuda_context(c.b.g, c.cfg);
  ASSERT_TRUE(infer_shapes(c.b.g, c.ctx).ok());
  ASSERT_TRUE(fuse_attention(c.b.g, c.ctx).ok());
  c.attn = fused_attention_node(c.b.g);
  ASSERT_NE(c.attn, nullptr) << ir::dump(c.b.g);
}

}  // namespace

TEST(MergeQkv, ThreeProjectionsBecomeOneGemmReadThroughSliceViews) {
  for (bool shape_reader : {true, false}) {
    SCOPED_TRACE("shape reader " + std::to_string(shape_reader));
    Options o;
    o.shape_reader = shape_reader;
    FusedCase c;
    std::unique_ptr<ir::Graph> before;
    ASSERT_NO_FATAL_FAILURE(make_fused_case(c, o, &before));
    G& b = c.b;
    PassContext& ctx = c.ctx;
    ASSERT_EQ(ctx.stats["fused_attention"], 1) << ir::dump(b.g);
    Status s = merge_qkv(b.g, ctx);
    ASSERT_TRUE(s.ok()) << s.to_string();
    ASSERT_TRUE(ir::verify(b.g).ok()) << ir::dump(b.g);
    ASSERT_TRUE(infer_shapes(b.g, ctx).ok()) << ir::dump(b.g);
    EXPECT_EQ(ctx.stats["merged_qkv_projections"], 1);
    const ir::Node* f = fused_attention_node(b.g);
    ASSERT_NE(f, nullptr);
    // One [kE, 3 kE] projection feeds Q, K and V; each view opens with its column slice.
    EXPECT_EQ(f->input(0), f->input(1));
    EXPECT_EQ(f->input(1), f->input(2));
    const ir::Node* mm = f->input(0)->producer;
    ASSERT_NE(mm, nullptr);
    EXPECT_EQ(mm->op_type, "MatMul");
    EXPECT_EQ(mm->input(1)->initializer->dims(), (Dims{kE, 3 * kE}));
    EXPECT_EQ(fused_from(*mm).size(), 3u);
    int64_t start = 0;
    for (const char* view : {"q_view", "k_view", "v_view"}) {
      auto steps = ops::attn::decode_view(f->attrs.find(view)->ints);
      ASSERT_TRUE(steps && !steps->empty()) << view;
      EXPECT_EQ((*steps)[0].op, ops::attn::kSlice) << view;
      EXPECT_EQ((*steps)[0].args, (std::vector<int64_t>{-1, start, start + kE, 1})) << view;
      start += kE;
    }
    auto ops = op_types(b.g);
    EXPECT_EQ(std::count(ops.begin(), ops.end(), "MatMul"), 1) << ir::dump(b.g);
    // The Shape reader's Transpose now reads a Slice of the packed output; neither runs.
    auto only = ir::shape_only_nodes(b.g);
    for (auto& n : b.g.nodes())
      if (n->op_type == "Slice") {
        EXPECT_TRUE(only.count(n.get())) << n->describe();
      }
    EXPECT_EQ(std::count(ops.begin(), ops.end(), "Slice"), shape_reader ? 1 : 0) << ir::dump(b.g);
    check_numerics(o, *before, b.g);
  }
}

TEST(MergeQkv, LeavesProjectionsWithDataReadersAlone) {
  // A projection that another node reads as data keeps its own GEMM (all three do).
  FusedCase c;
  ASSERT_NO_FATAL_FAILURE(make_fused_case(c, Options{}));
  G& b = c.b;
  PassContext& ctx = c.ctx;
  const ir::Node* f = c.attn;
  // A second data reader of the K projection.
  ir::Value* extra = b.op("Relu", {f->inputs[1]});
  b.g.outputs.push_back(extra);
  ASSERT_TRUE(merge_qkv(b.g, ctx).ok());
  EXPECT_EQ(ctx.stats["merged_qkv_projections"], 0);
  auto ops = op_types(b.g);
  EXPECT_EQ(std::count(ops.begin(), ops.end(), "MatMul"), 3) << ir::dump(b.g);
}

TEST(MergeQkv, LeavesProjectionsReadBySubgraphBodiesAlone) {
  // A Loop body reads the K projection by name: merging would remove its producer.
  Options o;
  o.shape_reader = false;
  FusedCase c;
  ASSERT_NO_FATAL_FAILURE(make_fused_case(c, o));
  G& b = c.b;
  PassContext& ctx = c.ctx;
  ir::Value* k = c.attn->inputs[1];
  b.g.outputs.push_back(testing::add_loop_reading(b.g, k, b.g.find_value("x")));
  std::unique_ptr<ir::Graph> before(b.g.clone());
  ASSERT_TRUE(infer_shapes(b.g, ctx).ok());
  ASSERT_TRUE(merge_qkv(b.g, ctx).ok());
  ASSERT_TRUE(ir::verify(b.g).ok()) << ir::dump(b.g);
  EXPECT_EQ(ctx.stats["merged_qkv_projections"], 0);
  ASSERT_NE(k->producer, nullptr) << ir::dump(b.g);
  EXPECT_EQ(k->producer->op_type, "MatMul");
  auto ops = op_types(b.g);
  EXPECT_EQ(std::count(ops.begin(), ops.end(), "MatMul"), 3) << ir::dump(b.g);
  // The body still finds K: the graph runs as before.
  std::map<std::string, Tensor> in = {{"x", random_tensor(DataType::kFloat32, {2, kS, kE}, 7)},
                                      {"mask", random_tensor(DataType::kFloat32, {2, 1, 1, kS}, 8)}};
  auto want = testing::execute(*before, in);
  auto got = testing::execute(b.g, in);
  for (ir::Value* out : before->outputs) {
    ASSERT_TRUE(got.count(out->name)) << out->name;
    const Tensor &t = got.at(out->name), &w = want.at(out->name);
    ASSERT_EQ(t.dims(), w.dims()) << out->name;
    for (int64_t i = 0; i < w.numel(); ++i) ASSERT_EQ(t.get_as_double(i), w.get_as_double(i)) << out->name;
  }
}

}  // namespace kiln::passes

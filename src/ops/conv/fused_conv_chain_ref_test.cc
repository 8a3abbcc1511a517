// FusedConv with kiln.chain_activation on the CPU (reference and cpu.conv_epilogue): output 0 is the
// FusedConv's Y and output 1 a 1x1 conv of it, the same as a FusedConv followed by a Conv (or a
// FusedConv with ReLU), NCHW and NHWC, with Z, a shortcut or neither; inference rejects chains whose
// inputs or outputs do not fit, naming what is wrong.
#include <random>

#include "harness/op_harness.h"
#include "ops/conv/conv_internal.h"
#include "ops/layout.h"

namespace kiln::test {
namespace {

using ir::Attribute;

struct ChainCase {
  DataType dt;
  Dims x;  // NCHW
  int64_t m, k, pad, m2;
  const char* act;  // Y's
  bool relu3;       // kiln.chain_activation "Relu" (else "")
  bool z;
  int64_t s;  // kiln.shortcut_strides (0: none)
  bool bias3;
};

struct Inputs {
  Tensor x, w, b, z, x2, w2, b2, w3, b3;
};

int64_t out_h(const ChainCase& d) { return d.x[2] + 2 * d.pad - d.k + 1; }
int64_t out_w(const ChainCase& d) { return d.x[3] + 2 * d.pad - d.k + 1; }

Inputs make_inputs(const ChainCase& d, unsigned seed) {
  std::mt19937 rng(seed);
  Inputs in;
  const int64_t oh = out_h(d), ow = out_w(d), s = d.s ? d.s : 1;
  in.x = random_tensor(d.dt, d.x, rng);
  in.w = random_tensor(d.dt, {d.m, d.x[1], d.k, d.k}, rng, -0.3, 0.3);
  in.b = random_tensor(d.dt, {d.m}, rng);
  in.z = random_tensor(d.dt, {d.x[0], d.m, oh, ow}, rng);
  in.x2 = random_tensor(d.dt, {d.x[0], 6, (oh - 1) * s + 1, (ow - 1) * s + 1}, rng);
  in.w2 = random_tensor(d.dt, {d.m, 6, 1, 1}, rng, -0.3, 0.3);
  in.b2 = random_tensor(d.dt, {d.m}, rng);
  in.w3 = random_tensor(d.dt, {d.m2, d.m, 1, 1}, rng, -0.3, 0.3);
  in.b3 = random_tensor(d.dt, {d.m2}, rng);
  return in;
}

// The FusedConv without the chain (chain = false) or with it; NHWC: activations and weights
// channels-last, kiln.nhwc = 1.
OpCase fused_case(const ChainCase& d, const Inputs& in, bool chain, bool nhwc) {
  auto t = [&](const Tensor& v) { return nhwc ? ops::tensor_nchw_to_nhwc(v) : v; };
  OpCase c("FusedConv", 1, "com.microsoft");
  c.attr("kernel_shape", Attribute::from_ints({d.k, d.k}));
  c.attr("pads", Attribute::from_ints({d.pad, d.pad, d.pad, d.pad}));
  if (*d.act) c.attr("activation", Attribute::from_string(d.act));
  if (d.s) c.attr(ops::conv::kShortcutAttr, Attribute::from_ints({d.s, d.s}));
  if (chain) c.attr(ops::conv::kChainAttr, Attribute::from_string(d.relu3 ? "Relu" : "")).outputs(2);
  if (nhwc) c.attr(ops::kNhwcAttr, Attribute::from_int(1));
  c.input(t(in.x)).input(t(in.w)).input(in.b);
  d.z ? c.input(t(in.z)) : c.no_input();
  if (d.s)
    c.input(t(in.x2)).input(t(in.w2)).input(in.b2);
  else if (chain)
    c.no_input().no_input().no_input();
  if (!chain) return c;
  c.input(t(in.w3));
  if (d.bias3) c.input(in.b3);
  return c;
}

// The same by hand: Y = FusedConv(...), then H2 = FusedConv(Y, W3, B3; Relu) or Conv(Y, W3, B3).
std::pair<Tensor, Tensor> composed(const ChainCase& d, const Inputs& in) {
  auto y = fused_case(d, in, false, false).run("ref");
  EXPECT_TRUE(y.ok()) << y.status().to_string();
  OpCase c = d.relu3 ? OpCase("FusedConv", 1, "com.microsoft") : OpCase("Conv", 17);
  if (d.relu3) c.attr("activation", Attribute::from_string("Relu"));
  c.attr("kernel_shape", Attribute::from_ints({1, 1}));
  c.input((*y)[0]).input(in.w3);
  if (d.bias3) c.input(in.b3);
  auto h2 = c.run("ref");
  EXPECT_TRUE(h2.ok()) << h2.status().to_string();
  return {(*y)[0], (*h2)[0]};
}

TEST(FusedConv, ChainReferenceMatchesFusedConvThenConv) {
  const std::vector<ChainCase> cases = {
      {DataType::kFloat16, {2, 16, 5, 6}, 32, 1, 0, 24, "Relu", true, true, 0, true},      // Z
      {DataType::kFloat16, {1, 16, 4, 4}, 32, 1, 0, 16, "Relu", true, false, 1, true},     // a stride-1 shortcut
      {DataType::kBFloat16, {2, 8, 3, 3}, 16, 1, 0, 8, "", false, false, 2, false},        // stride 2, no B3
      {DataType::kFloat32, {1, 8, 6, 5}, 12, 3, 1, 10, "Silu", true, true, 0, true},       // 3x3 under the chain
      {DataType::kFloat32, {2, 4, 4, 4}, 8, 1, 0, 6, "LeakyRelu", false, false, 0, true},  // neither Z nor shortcut
      {DataType::kFloat32, {1, 6, 4, 3}, 10, 1, 0, 5, "Relu", true, true, 2, false},       // Z and a shortcut
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const ChainCase& d = cases[i];
    SCOPED_TRACE(std::string(dtype_name(d.dt)) + " case " + std::to_string(i));
    const Inputs in = make_inputs(d, 40 + static_cast<unsigned>(i));
    const auto [y, h2] = composed(d, in);
    OpCase c = fused_case(d, in, true, false);
    auto ref = c.run("ref");
    ASSERT_TRUE(ref.ok()) << ref.status().to_string();
    ASSERT_EQ(ref->size(), 2u);
    // The same conv of the same rounded Y, the activation on its rounded values: equal.
    EXPECT_TRUE(tensors_close((*ref)[0], y, 0, 0));
    EXPECT_TRUE(tensors_close((*ref)[1], h2, 0, 0));
    // The fast CPU kernel (im2col GEMM for FP32) computes Y its way, then the same chained conv.
    auto fast = c.run("cpu.conv_epilogue");
    ASSERT_TRUE(fast.ok()) << fast.status().to_string();
    ASSERT_EQ(fast->size(), 2u);
    EXPECT_TRUE(tensors_close((*fast)[0], (*ref)[0], 1e-4, 1e-5));
    EXPECT_TRUE(tensors_close((*fast)[1], (*ref)[1], 1e-4, 1e-5));
    // Channels-last: W3 changes layout as W does, and output 1 as output 0.
    OpCase h = fused_case(d, in, true, true);
    auto nhwc = h.run("ref");
    ASSERT_TRUE(nhwc.ok()) << nhwc.status().to_string();
    ASSERT_EQ(nhwc->size(), 2u);
    EXPECT_TRUE(tensors_close((*nhwc)[0], ops::tensor_nchw_to_nhwc((*ref)[0]), 0, 0));
    EXPECT_TRUE(tensors_close((*nhwc)[1], ops::tensor_nchw_to_nhwc((*ref)[1]), 0, 0));
  }
}

// A valid FP32 chain to break one thing at a time: X [1, 64, 4, 4], W [16, 64, 1, 1] (M = 16), no
// Z nor shortcut, W3 [8, 16, 1, 1], B3 [8].
struct Parts {
  Dims w3{8, 16, 1, 1}, b3{8};
  DataType w3_dt = DataType::kFloat32;
  bool attr = true, max_pool = false, w3_input = true, b3_input = true, x2_input = false;
  std::string act = "Relu";
  int outputs = 2;
};

Status infer_error(const Parts& p) {
  OpCase c("FusedConv", 1, "com.microsoft");
  c.attr("activation", Attribute::from_string("Relu"));
  if (p.attr) c.attr(ops::conv::kChainAttr, Attribute::from_string(p.act));
  if (p.max_pool) c.attr(ops::conv::kMaxPoolAttr, Attribute::from_ints({3, 3, 2, 2, 1, 1, 1, 1}));
  c.outputs(p.outputs);
  c.input(DataType::kFloat32, {1, 64, 4, 4}).input(DataType::kFloat32, {16, 64, 1, 1});
  c.input(DataType::kFloat32, {16}).no_input();
  p.x2_input ? c.input(DataType::kFloat32, {1, 32, 4, 4}) : c.no_input();
  c.no_input().no_input();
  p.w3_input ? c.input(p.w3_dt, p.w3) : c.no_input();
  if (p.b3_input) c.input(DataType::kFloat32, p.b3);
  auto r = c.run("ref");
  return r.ok() ? Status() : r.status();
}

void expect_error(const Parts& p, const std::string& needle) {
  Status s = infer_error(p);
  ASSERT_FALSE(s.ok()) << "expected an error naming '" << needle << "'";
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
}

TEST(FusedConv, ChainInferenceErrorsNameWhatIsWrong) {
  Status ok = infer_error(Parts{});
  ASSERT_TRUE(ok.ok()) << ok.to_string();
  Parts p;
  p.b3_input = false;  // B3 is optional
  ok = infer_error(p);
  ASSERT_TRUE(ok.ok()) << ok.to_string();
  p = Parts{};
  p.w3 = {8, 24, 1, 1};
  expect_error(p, "W3 [8,24,1,1] expects 24 channels but Y has 16");
  p = Parts{};
  p.w3 = {8, 16, 3, 3};
  expect_error(p, "W3 must be 1x1 ([M2, M, 1, 1]), got [8,16,3,3]");
  p = Parts{};
  p.b3 = {7};
  expect_error(p, "B3 [7] must be [M2] with M2 = 8");
  p = Parts{};
  p.w3_dt = DataType::kFloat16;
  expect_error(p, "W3 is float16 but X is float32");
  p = Parts{};
  p.w3_input = false;
  expect_error(p, "kiln.chain_activation needs input 7 (W3)");
  p = Parts{};
  p.max_pool = true;
  expect_error(p, "kiln.chain_activation cannot be combined with kiln.max_pool");
  p = Parts{};
  p.attr = false;
  p.outputs = 1;
  expect_error(p, "FusedConv has 9 inputs; inputs 7 (W3) and 8 (B3) need kiln.chain_activation");
  p = Parts{};
  p.attr = false;
  p.outputs = 1;
  p.b3_input = false;
  expect_error(p, "FusedConv has 8 inputs; inputs 7 (W3) and 8 (B3) need kiln.chain_activation");
  p = Parts{};
  p.x2_input = true;
  expect_error(p, "FusedConv has input 4; inputs 4-6 (X2, W2, B2) need kiln.shortcut_strides");
  p = Parts{};
  p.outputs = 1;
  expect_error(p, "FusedConv with kiln.chain_activation has 2 outputs (Y, H2), got 1");
  p = Parts{};
  p.outputs = 3;
  expect_error(p, "has 2 outputs (Y, H2), got 3");
  p = Parts{};
  p.act = "Sigmoid";
  expect_error(p, "kiln.chain_activation: activation 'Sigmoid' is not supported");
}

// Without the chain a FusedConv has one output; with it, an empty slot ahead of W3 is not a shortcut.
TEST(FusedConv, ChainInferenceOutputCountAndEmptyShortcutSlots) {
  OpCase c("FusedConv", 1, "com.microsoft");
  c.outputs(2).input(DataType::kFloat32, {1, 8, 3, 3}).input(DataType::kFloat32, {4, 8, 1, 1});
  auto r = c.run("ref");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("FusedConv has 2 outputs; a second one (H2) needs kiln.chain_activation"),
            std::string::npos)
      << r.status().message();
  OpCase d("FusedConv", 1, "com.microsoft");  // 5 inputs, the fifth empty, no chain: as before, an error
  d.input(DataType::kFloat32, {1, 8, 3, 3}).input(DataType::kFloat32, {4, 8, 1, 1}).no_input().no_input().no_input();
  r = d.run("ref");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("FusedConv has 5 inputs; inputs past Z need kiln.shortcut_strides"),
            std::string::npos)
      << r.status().message();
}

// Through the NHWC adapter: W3 [M2, 1, 1, M] against Y's channels, output 1 [N, H, W, M2]; unknown
// dims pass, known ones still compare.
TEST(FusedConv, ChainInferenceThroughTheNhwcAdapter) {
  OpCase c("FusedConv", 1, "com.microsoft");
  c.attr(ops::conv::kChainAttr, Attribute::from_string("Relu")).attr(ops::kNhwcAttr, Attribute::from_int(1));
  c.outputs(2);
  c.input(DataType::kFloat16, {1, 4, 4, 64}).input(DataType::kFloat16, {256, 1, 1, 64}).no_input().no_input();
  c.no_input().no_input().no_input().input(DataType::kFloat16, {128, 1, 1, 256});
  const ir::Node& node = c.node();
  const DataType h = DataType::kFloat16;
  const Dim n = Dim::symbol("n"), any = Dim::unknown();
  auto types = [&](Shape x, Shape w3) {
    return std::vector<ops::TensorType>{{h, x}, {h, Shape{256, 1, 1, 64}}, {}, {}, {}, {}, {}, {h, w3}};
  };
  auto r = ops::infer_node(node, types({n, any, 7, 64}, {128, 1, 1, 256}), {});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 2u);
  ASSERT_TRUE((*r)[0].shape && (*r)[1].shape);
  EXPECT_EQ(shape_to_string(*(*r)[0].shape), "[n,?,7,256]");
  EXPECT_EQ(shape_to_string(*(*r)[1].shape), "[n,?,7,128]");
  EXPECT_EQ((*r)[1].dtype, h);
  r = ops::infer_node(node, types({n, any, 7, 64}, {128, 1, 1, any}), {});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(shape_to_string(*(*r)[1].shape), "[n,?,7,128]");
  r = ops::infer_node(node, types({n, any, 7, 64}, {128, 1, 1, 64}), {});  // W3 over 64 channels, Y has 256
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("expects 64 channels but Y has 256"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace kiln::test

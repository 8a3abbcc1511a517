// FusedConv with kiln.shortcut_strides on the CPU (reference and cpu.conv_epilogue): the same
// as a 1x1 strided Conv fed as Z to a FusedConv, NCHW and NHWC; inference rejects shortcuts whose
// inputs or output do not fit the conv's, naming what is wrong, and lets unknown dims through.
#include <random>

#include "harness/op_harness.h"
#include "ops/conv/conv_internal.h"
#include "ops/layout.h"

namespace kiln::test {
namespace {

using ir::Attribute;

struct ShortcutCase {
  DataType dt;
  Dims x;  // NCHW
  int64_t m, k, pad;
  Dims x2;  // NCHW
  int64_t s;
  const char* act;
  bool bias, bias2, z;
};

struct Inputs {
  Tensor x, w, b, z, x2, w2, b2;
};

Inputs make_inputs(const ShortcutCase& d, unsigned seed) {
  std::mt19937 rng(seed);
  Inputs in;
  const int64_t oh = d.x[2] + 2 * d.pad - d.k + 1, ow = d.x[3] + 2 * d.pad - d.k + 1;
  in.x = random_tensor(d.dt, d.x, rng);
  in.w = random_tensor(d.dt, {d.m, d.x[1], d.k, d.k}, rng, -0.3, 0.3);
  in.b = random_tensor(d.dt, {d.m}, rng);
  in.z = random_tensor(d.dt, {d.x[0], d.m, oh, ow}, rng);
  in.x2 = random_tensor(d.dt, d.x2, rng);
  in.w2 = random_tensor(d.dt, {d.m, d.x2[1], 1, 1}, rng, -0.3, 0.3);
  in.b2 = random_tensor(d.dt, {d.m}, rng);
  return in;
}

// The FusedConv with the shortcut; NHWC: activations and weights channels-last, kiln.nhwc = 1.
OpCase shortcut_case(const ShortcutCase& d, const Inputs& in, bool nhwc) {
  auto t = [&](const Tensor& v) { return nhwc ? ops::tensor_nchw_to_nhwc(v) : v; };
  OpCase c("FusedConv", 1, "com.microsoft");
  c.attr("kernel_shape", Attribute::from_ints({d.k, d.k}));
  c.attr("pads", Attribute::from_ints({d.pad, d.pad, d.pad, d.pad}));
  c.attr(ops::conv::kShortcutAttr, Attribute::from_ints({d.s, d.s}));
  if (*d.act) c.attr("activation", Attribute::from_string(d.act));
  if (nhwc) c.attr(ops::kNhwcAttr, Attribute::from_int(1));
  c.input(t(in.x)).input(t(in.w));
  d.bias ? c.input(in.b) : c.no_input();
  d.z ? c.input(t(in.z)) : c.no_input();
  c.input(t(in.x2)).input(t(in.w2));
  if (d.bias2) c.input(in.b2);
  return c;
}

// The same by hand: r = Conv(X2, W2, B2; 1x1, strides s), then FusedConv(X, W, B, Z + r).
Tensor composed(const ShortcutCase& d, const Inputs& in) {
  OpCase conv("Conv", 17);
  conv.attr("kernel_shape", Attribute::from_ints({1, 1})).attr("strides", Attribute::from_ints({d.s, d.s}));
  conv.input(in.x2).input(in.w2);
  if (d.bias2) conv.input(in.b2);
  auto r = conv.run("ref");
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  Tensor zr = (*r)[0];
  if (d.z) {
    zr = Tensor::empty(d.dt, in.z.dims());
    for (int64_t i = 0; i < zr.numel(); ++i) zr.set_from_double(i, in.z.get_as_double(i) + (*r)[0].get_as_double(i));
  }
  OpCase c("FusedConv", 1, "com.microsoft");
  c.attr("kernel_shape", Attribute::from_ints({d.k, d.k}));
  c.attr("pads", Attribute::from_ints({d.pad, d.pad, d.pad, d.pad}));
  if (*d.act) c.attr("activation", Attribute::from_string(d.act));
  c.input(in.x).input(in.w);
  d.bias ? c.input(in.b) : c.no_input();
  c.input(zr);
  auto y = c.run("ref");
  EXPECT_TRUE(y.ok()) << y.status().to_string();
  return (*y)[0];
}

TEST(FusedConv, ShortcutReferenceMatchesConvThenFusedConv) {
  const std::vector<ShortcutCase> cases = {
      {DataType::kFloat16, {2, 64, 5, 6}, 128, 1, 0, {2, 32, 5, 6}, 1, "Relu", true, true, false},  // layer1's form
      {DataType::kFloat16, {1, 16, 3, 4}, 32, 1, 0, {1, 24, 6, 8}, 2, "Relu", true, false, false},  // stride 2, no B2
      {DataType::kBFloat16, {2, 8, 3, 3}, 16, 1, 0, {2, 8, 5, 5}, 2, "", false, true, false},       // odd, no B
      {DataType::kFloat32, {1, 8, 6, 5}, 12, 3, 1, {1, 4, 11, 9}, 2, "Silu", true, true, true},     // 3x3, Z too
      {DataType::kFloat32, {2, 4, 4, 4}, 8, 1, 0, {2, 6, 10, 10}, 3, "LeakyRelu", true, true, false},  // stride 3
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const ShortcutCase& d = cases[i];
    SCOPED_TRACE(std::string(dtype_name(d.dt)) + " case " + std::to_string(i));
    const Inputs in = make_inputs(d, 20 + static_cast<unsigned>(i));
    const Tensor want = composed(d, in);
    // Without Z the fused epilogue adds the same rounded conv values as Z would: equal. With Z the
    // composition rounds Z + r first (FP32 only).
    const double rtol = d.z ? 1e-5 : 0, atol = d.z ? 1e-6 : 0;
    OpCase c = shortcut_case(d, in, false);
    auto ref = c.run("ref");
    ASSERT_TRUE(ref.ok()) << ref.status().to_string();
    EXPECT_TRUE(tensors_close((*ref)[0], want, rtol, atol));
    // The fast CPU kernel (im2col GEMM for FP32) goes through the same epilogue.
    auto fast = c.run("cpu.conv_epilogue");
    ASSERT_TRUE(fast.ok()) << fast.status().to_string();
    EXPECT_TRUE(tensors_close((*fast)[0], (*ref)[0], 1e-4, 1e-5));
    // Channels-last: X2 and W2 change layout as X and W do.
    OpCase h = shortcut_case(d, in, true);
    auto nhwc = h.run("ref");
    ASSERT_TRUE(nhwc.ok()) << nhwc.status().to_string();
    EXPECT_TRUE(tensors_close((*nhwc)[0], ops::tensor_nchw_to_nhwc((*ref)[0]), 0, 0));
  }
}

// A valid FP32 case to break one thing at a time: X [1, 64, 4, 4] (a 1x1 conv), X2 [1, 32, 8, 8]
// at stride 2, M = 16.
struct Parts {
  DataType x2_dt = DataType::kFloat32;
  Dims x2{1, 32, 8, 8}, w2{16, 32, 1, 1}, b2{16};
  std::vector<int64_t> strides{2, 2};
  bool attr = true, max_pool = false;
  int inputs = 7;  // X, W, B, Z (omitted), X2, W2, B2
};

Status infer_error(const Parts& p) {
  OpCase c("FusedConv", 1, "com.microsoft");
  c.attr("activation", Attribute::from_string("Relu"));
  if (p.attr) c.attr(ops::conv::kShortcutAttr, Attribute::from_ints(p.strides));
  if (p.max_pool) c.attr(ops::conv::kMaxPoolAttr, Attribute::from_ints({3, 3, 2, 2, 1, 1, 1, 1}));
  c.input(DataType::kFloat32, {1, 64, 4, 4}).input(DataType::kFloat32, {16, 64, 1, 1});
  c.input(DataType::kFloat32, {16}).no_input();
  if (p.inputs > 4) c.input(p.x2_dt, p.x2);
  if (p.inputs > 5) c.input(DataType::kFloat32, p.w2);
  if (p.inputs > 6) c.input(DataType::kFloat32, p.b2);
  auto r = c.run("ref");
  return r.ok() ? Status() : r.status();
}

void expect_error(const Parts& p, const std::string& needle) {
  Status s = infer_error(p);
  ASSERT_FALSE(s.ok()) << "expected an error naming '" << needle << "'";
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
}

TEST(FusedConv, ShortcutInferenceErrorsNameWhatIsWrong) {
  Status ok = infer_error(Parts{});
  ASSERT_TRUE(ok.ok()) << ok.to_string();
  Parts p;
  p.strides = {1, 1};  // an 8x8 shortcut output against the conv's 4x4
  expect_error(p, "height (dim 2) is 8");
  p = Parts{};
  p.x2 = {1, 32, 8, 10};  // 4 x 5
  expect_error(p, "width (dim 3) is 5");
  p = Parts{};
  p.x2 = {2, 32, 8, 8};
  expect_error(p, "batch (dim 0)");
  p = Parts{};
  p.w2 = {16, 32, 3, 3};
  expect_error(p, "W2 must be 1x1");
  p = Parts{};
  p.w2 = {16, 24, 1, 1};
  expect_error(p, "X2 [1,32,8,8] has 32");
  p = Parts{};
  p.w2 = {8, 32, 1, 1};
  p.b2 = {8};
  expect_error(p, "W2 has 8 output channels but W has 16");
  p = Parts{};
  p.b2 = {15};
  expect_error(p, "B2");
  p = Parts{};
  p.x2_dt = DataType::kFloat16;
  expect_error(p, "X2 is float16 but X is float32");
  p = Parts{};
  p.max_pool = true;
  expect_error(p, "kiln.shortcut_strides cannot be combined with kiln.max_pool");
  p = Parts{};
  p.attr = false;
  expect_error(p, "FusedConv has 7 inputs; inputs past Z need kiln.shortcut_strides");
  p = Parts{};
  p.inputs = 4;
  expect_error(p, "needs inputs 4 (X2) and 5 (W2)");
  p = Parts{};
  p.strides = {2, 2, 1};
  expect_error(p, "kiln.shortcut_strides needs 2 ints");
  p = Parts{};
  p.strides = {0, 1};
  expect_error(p, "strides must be >= 1");
}

// Dims known on one side only pass; known ones still compare (the NHWC adapter's view included).
TEST(FusedConv, ShortcutInferenceSkipsUnknownDims) {
  OpCase c("FusedConv", 1, "com.microsoft");
  c.attr(ops::conv::kShortcutAttr, Attribute::from_ints({2, 2})).attr(ops::kNhwcAttr, Attribute::from_int(1));
  c.input(DataType::kFloat16, {1, 4, 4, 64}).input(DataType::kFloat16, {128, 1, 1, 64}).no_input().no_input();
  c.input(DataType::kFloat16, {1, 8, 8, 64}).input(DataType::kFloat16, {128, 1, 1, 64});
  const ir::Node& node = c.node();
  const DataType h = DataType::kFloat16;
  const Dim n = Dim::symbol("n"), any = Dim::unknown();
  // NHWC types: X [n, ?, ?, 64], W [128, 1, 1, 64], X2 [n, ?, 9, 64], W2 [128, 1, 1, 64].
  auto types = [&](Shape x, Shape x2) {
    return std::vector<ops::TensorType>{{h, x}, {h, Shape{128, 1, 1, 64}}, {}, {}, {h, x2}, {h, Shape{128, 1, 1, 64}}};
  };
  auto r = ops::infer_node(node, types({n, any, any, 64}, {n, any, 9, 64}), {});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_TRUE((*r)[0].shape);
  EXPECT_EQ(shape_to_string(*(*r)[0].shape), "[n,?,?,128]");
  r = ops::infer_node(node, types({n, any, 4, 64}, {n, any, 9, 64}), {});  // (9 - 1) / 2 + 1 = 5 against 4
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("width (dim 3) is 5"), std::string::npos) << r.status().message();
  r = ops::infer_node(node, types({1, 4, 5, 64}, {n, 7, 9, 64}), {});
  EXPECT_TRUE(r.ok()) << r.status().to_string();
}

}  // namespace
}  // namespace kiln::test

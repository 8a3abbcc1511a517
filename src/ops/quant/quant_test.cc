#include <cmath>

#include "harness/op_harness.h"

namespace kiln::test {
namespace {

Tensor vec(DataType t, Dims d, const std::vector<double>& v) { return Tensor::from_vector(t, std::move(d), v); }
Tensor scalar(DataType t, double v) { return Tensor::from_vector(t, {}, std::vector<double>{v}); }

double clampd(double v, double lo, double hi) { return std::min(hi, std::max(lo, v)); }

TEST(QuantizeLinear, PerTensorRoundsHalfToEvenAndSaturates) {
  Tensor x = vec(DataType::kFloat32, {8}, {0.5, 1.5, 2.5, -0.5, -1.5, 300, -300, 0.49});
  OpCase c("QuantizeLinear", 13);
  c.input(x).input(scalar(DataType::kFloat32, 1.0)).input(scalar(DataType::kInt8, 3));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  std::vector<double> want = {3, 5, 5, 3, 1, 127, -128, 3};
  ASSERT_EQ((*out)[0].dtype(), DataType::kInt8);
  for (int i = 0; i < 8; ++i) EXPECT_EQ((*out)[0].get_as_double(i), want[i]) << i;
}

TEST(QuantizeLinear, RandomPerTensorPerAxisBlocked) {
  // per-tensor uint8 (default output type without zero point)
  OpCase t("QuantizeLinear", 13);
  t.input(DataType::kFloat32, {4, 5}, -3, 3).input(scalar(DataType::kFloat32, 0.03));
  auto to = t.run();
  ASSERT_TRUE(to.ok()) << to.status().to_string();
  EXPECT_EQ((*to)[0].dtype(), DataType::kUInt8);
  for (int64_t i = 0; i < 20; ++i) {
    float q = static_cast<float>(t.inputs()[0]->get_as_double(i)) / 0.03f;
    EXPECT_EQ((*to)[0].get_as_double(i), clampd(std::nearbyint(q), 0, 255));
  }
  // per-axis int8 on axis 1
  Tensor s = vec(DataType::kFloat32, {3}, {0.01, 0.02, 0.05});
  Tensor z = vec(DataType::kInt8, {3}, {-5, 0, 7});
  OpCase a("QuantizeLinear", 13);
  a.input(DataType::kFloat32, {2, 3, 4}, -2, 2).input(s).input(z);
  auto ao = a.run();
  ASSERT_TRUE(ao.ok()) << ao.status().to_string();
  for (int64_t i = 0; i < 24; ++i) {
    int64_t ch = (i / 4) % 3;
    float q = static_cast<float>(a.inputs()[0]->get_as_double(i)) / static_cast<float>(s.get_as_double(ch));
    EXPECT_EQ((*ao)[0].get_as_double(i), clampd(std::nearbyint(q) + z.get_as_double(ch), -128, 127)) << i;
  }
  // blocked int16 via output_dtype, block 2 along axis 1 (5 columns -> 3 blocks)
  Tensor bs = vec(DataType::kFloat32, {2, 3}, {0.001, 0.002, 0.003, 0.004, 0.005, 0.006});
  OpCase b("QuantizeLinear", 21);
  b.attr("axis", ir::Attribute::from_int(1)).attr("block_size", ir::Attribute::from_int(2));
  b.attr("output_dtype", ir::Attribute::from_int(static_cast<int64_t>(DataType::kInt16)));
  b.input(DataType::kFloat32, {2, 5}, -40, 40).input(bs);
  auto bo = b.run();
  ASSERT_TRUE(bo.ok()) << bo.status().to_string();
  EXPECT_EQ((*bo)[0].dtype(), DataType::kInt16);
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t col = 0; col < 5; ++col) {
      float sc = static_cast<float>(bs.get_as_double(r * 3 + col / 2));
      float q = static_cast<float>(b.inputs()[0]->get_as_double(r * 5 + col)) / sc;
      EXPECT_EQ((*bo)[0].get_as_double(r * 5 + col), clampd(std::nearbyint(q), -32768, 32767));
    }
}

TEST(DequantizeLinear, PerAxisAndBlockedMatchFormula) {
  Tensor s = vec(DataType::kFloat32, {3}, {0.5, 0.25, 2});
  Tensor z = vec(DataType::kUInt8, {3}, {128, 10, 0});
  OpCase a("DequantizeLinear", 13);
  a.attr("axis", ir::Attribute::from_int(-1));
  a.input(DataType::kUInt8, {2, 3}, 0, 255).input(s).input(z);
  auto ao = a.run();
  ASSERT_TRUE(ao.ok()) << ao.status().to_string();
  for (int64_t i = 0; i < 6; ++i)
    EXPECT_EQ((*ao)[0].get_as_double(i),
              (a.inputs()[0]->get_as_double(i) - z.get_as_double(i % 3)) * s.get_as_double(i % 3));

  Tensor bs = vec(DataType::kFloat16, {2, 1}, {0.5, 4});
  Tensor bz = vec(DataType::kInt16, {2, 1}, {-3, 1000});
  OpCase b("DequantizeLinear", 21);
  b.attr("axis", ir::Attribute::from_int(1)).attr("block_size", ir::Attribute::from_int(4));
  b.input(DataType::kInt16, {2, 3}, -2000, 2000).input(bs).input(bz);
  auto bo = b.run();
  ASSERT_TRUE(bo.ok()) << bo.status().to_string();
  EXPECT_EQ((*bo)[0].dtype(), DataType::kFloat16);
  for (int64_t i = 0; i < 6; ++i) {
    double want = (b.inputs()[0]->get_as_double(i) - bz.get_as_double(i / 3)) * bs.get_as_double(i / 3);
    EXPECT_NEAR((*bo)[0].get_as_double(i), want, std::fabs(want) * 1e-3);
  }
}

TEST(DequantizeLinear, RoundTripWithinHalfStep) {
  OpCase q("QuantizeLinear", 13);
  q.input(DataType::kFloat32, {64}, -1, 1).input(scalar(DataType::kFloat32, 0.01)).input(scalar(DataType::kUInt8, 120));
  auto qo = q.run();
  ASSERT_TRUE(qo.ok());
  OpCase d("DequantizeLinear", 13);
  d.input((*qo)[0]).input(scalar(DataType::kFloat32, 0.01)).input(scalar(DataType::kUInt8, 120));
  auto dq = d.run();
  ASSERT_TRUE(dq.ok());
  for (int64_t i = 0; i < 64; ++i)
    EXPECT_NEAR((*dq)[0].get_as_double(i), q.inputs()[0]->get_as_double(i), 0.005 + 1e-6);
}

TEST(QuantizeLinear, BadInputsAreErrors) {
  OpCase shape("QuantizeLinear", 13);
  shape.input(DataType::kFloat32, {2, 3}).input(vec(DataType::kFloat32, {2}, {1, 1}));
  EXPECT_FALSE(shape.run().ok());
  OpCase old("QuantizeLinear", 10);
  old.input(DataType::kFloat32, {2, 3}).input(vec(DataType::kFloat32, {3}, {1, 1, 1}));
  EXPECT_FALSE(old.run().ok());
  OpCase f6("QuantizeLinear", 25);
  f6.attr("output_dtype", ir::Attribute::from_int(27));  // float6e2m3
  f6.input(DataType::kFloat32, {2}).input(scalar(DataType::kFloat32, 1));
  auto r = f6.run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kUnsupported);
  OpCase bool_out("QuantizeLinear", 21);
  bool_out.attr("output_dtype", ir::Attribute::from_int(static_cast<int64_t>(DataType::kBool)));
  bool_out.input(DataType::kFloat32, {2}).input(scalar(DataType::kFloat32, 1));
  EXPECT_FALSE(bool_out.run().ok());
  OpCase fp8_in("QuantizeLinear", 21);
  fp8_in.input(DataType::kFloat8E4M3FN, {2}).input(scalar(DataType::kFloat32, 1));
  EXPECT_FALSE(fp8_in.run().ok());  // x must be float32/16, bfloat16 or int32
  OpCase block("DequantizeLinear", 21);
  block.attr("axis", ir::Attribute::from_int(1)).attr("block_size", ir::Attribute::from_int(2));
  block.input(DataType::kInt8, {2, 5}).input(vec(DataType::kFloat32, {2, 2}, {1, 1, 1, 1}));
  EXPECT_FALSE(block.run().ok());  // 5 columns need 3 blocks
  OpCase zt("DequantizeLinear", 13);
  zt.input(DataType::kInt8, {2}).input(scalar(DataType::kFloat32, 1)).input(scalar(DataType::kUInt8, 1));
  EXPECT_FALSE(zt.run().ok());
}

TEST(QuantizeLinear, FastKernelsMatchReference) {
  Tensor s = Tensor::from_vector(DataType::kFloat32, {3}, std::vector<double>{0.01, 0.02, 0.05});
  Tensor z = Tensor::from_vector(DataType::kUInt8, {3}, std::vector<double>{5, 128, 250});
  for (int64_t axis : {1, -1}) {
    Dims d = axis == 1 ? Dims{2, 3, 40} : Dims{2, 40, 3};
    OpCase q("QuantizeLinear", 13);
    q.attr("axis", ir::Attribute::from_int(axis));
    q.input(DataType::kFloat32, d, -4, 4).input(s).input(z);
    EXPECT_EQ(q.expect_all_kernels_match(0, 0), 1);
    OpCase dq("DequantizeLinear", 13);
    dq.attr("axis", ir::Attribute::from_int(axis));
    dq.input(DataType::kUInt8, d, 0, 255).input(s).input(z);
    EXPECT_EQ(dq.expect_all_kernels_match(0, 0), 1);
  }
  // Exact halves of the scale must round to even in the fast path too.
  Tensor x = Tensor::from_vector(DataType::kFloat32, {6}, std::vector<double>{0.5, 1.5, 2.5, -0.5, -2.5, NAN});
  OpCase h("QuantizeLinear", 13);
  h.input(x).input(scalar(DataType::kFloat32, 1.0)).input(scalar(DataType::kInt8, 0));
  EXPECT_EQ(h.expect_all_kernels_match(0, 0), 1);
}

TEST(DynamicQuantizeLinear, MatchesFormula) {
  OpCase c("DynamicQuantizeLinear", 11);
  c.input(DataType::kFloat32, {3, 7}, -2, 5).outputs(3);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  float lo = 0, hi = 0;
  for (int64_t i = 0; i < x.numel(); ++i)
    lo = std::min(lo, x.data_as<float>()[i]), hi = std::max(hi, x.data_as<float>()[i]);
  float scale = (hi - lo) / 255.f;
  double zp = std::nearbyint(clampd(0.f - lo / scale, 0, 255));
  EXPECT_FLOAT_EQ((*out)[1].get_as_double(0), scale);
  EXPECT_EQ((*out)[2].get_as_double(0), zp);
  for (int64_t i = 0; i < x.numel(); ++i) {
    double q = clampd(std::nearbyint(x.data_as<float>()[i] / scale) + zp, 0, 255);
    EXPECT_EQ((*out)[0].get_as_double(i), q);
    EXPECT_NEAR((q - zp) * scale, x.get_as_double(i), scale / 2 + 1e-6);
  }
}

TEST(QLinearMatMul, MatchesIntegerFormulaWithBroadcastAndPerColumn) {
  Tensor bs = vec(DataType::kFloat32, {3}, {0.01, 0.02, 0.015});
  Tensor bz = vec(DataType::kUInt8, {3}, {120, 130, 128});
  OpCase c("QLinearMatMul", 10);
  c.input(DataType::kUInt8, {2, 1, 4, 5}, 0, 255)
      .input(scalar(DataType::kFloat32, 0.02))
      .input(scalar(DataType::kUInt8, 100));
  c.input(DataType::kUInt8, {3, 5, 3}, 0, 255).input(bs).input(bz);
  c.input(scalar(DataType::kFloat32, 0.5)).input(scalar(DataType::kUInt8, 128));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& a = *c.inputs()[0];
  const Tensor& b = *c.inputs()[3];
  const Tensor& y = (*out)[0];
  ASSERT_EQ(y.dims(), (Dims{2, 3, 4, 3}));
  for (int64_t p = 0; p < 2; ++p)
    for (int64_t q = 0; q < 3; ++q)
      for (int64_t m = 0; m < 4; ++m)
        for (int64_t n = 0; n < 3; ++n) {
          int64_t acc = 0;
          for (int64_t k = 0; k < 5; ++k)
            acc += (a.get_as_int64((p * 4 + m) * 5 + k) - 100) *
                   (b.get_as_int64((q * 5 + k) * 3 + n) - bz.get_as_int64(n));
          double mult = static_cast<float>(static_cast<float>(0.02f * static_cast<float>(bs.get_as_double(n))) / 0.5f);
          double want = clampd(std::nearbyint(acc * mult + 128), 0, 255);
          EXPECT_EQ(y.get_as_double(((p * 3 + q) * 4 + m) * 3 + n), want);
        }
  // Shared 2-D weights take the int16 fast path.
  OpCase f("QLinearMatMul", 10);
  f.input(DataType::kInt8, {2, 7, 33}, -128, 127)
      .input(scalar(DataType::kFloat32, 0.02))
      .input(scalar(DataType::kInt8, -3));
  f.input(DataType::kInt8, {33, 3}, -128, 127)
      .input(bs)
      .input(Tensor::from_vector(DataType::kInt8, {3}, std::vector<double>{1, -2, 0}));
  f.input(scalar(DataType::kFloat32, 0.3)).input(scalar(DataType::kInt8, 5));
  EXPECT_EQ(f.expect_all_kernels_match(0, 0), 1);
}

TEST(QLinearConv, MatchesDirectConvolution) {
  // 2 groups, stride 2, asymmetric pads, per-channel weight scales, bias.
  int64_t N = 1, C = 4, H = 7, W = 6, M = 4, KH = 3, KW = 2, G = 2, S = 2;
  std::vector<int64_t> pads = {1, 0, 2, 1};
  Tensor ws = vec(DataType::kFloat32, {M}, {0.01, 0.02, 0.03, 0.04});
  Tensor wz = vec(DataType::kInt8, {M}, {0, 0, 0, 0});
  Tensor bias = vec(DataType::kInt32, {M}, {100, -200, 0, 5000});
  OpCase c("QLinearConv", 10);
  c.attr("group", ir::Attribute::from_int(G)).attr("strides", ir::Attribute::from_ints({S, S}));
  c.attr("pads", ir::Attribute::from_ints(pads));
  c.input(DataType::kInt8, {N, C, H, W}, -128, 127)
      .input(scalar(DataType::kFloat32, 0.05))
      .input(scalar(DataType::kInt8, 3));
  c.input(DataType::kInt8, {M, C / G, KH, KW}, -127, 127).input(ws).input(wz);
  c.input(scalar(DataType::kFloat32, 0.8)).input(scalar(DataType::kInt8, -4)).input(bias);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  const Tensor& w = *c.inputs()[3];
  int64_t OH = (H + pads[0] + pads[2] - KH) / S + 1, OW = (W + pads[1] + pads[3] - KW) / S + 1;
  ASSERT_EQ((*out)[0].dims(), (Dims{N, M, OH, OW}));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        int64_t acc = bias.get_as_int64(m);
        for (int64_t c2 = 0; c2 < C / G; ++c2)
          for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t kw = 0; kw < KW; ++kw) {
              int64_t ih = oh * S - pads[0] + kh, iw = ow * S - pads[1] + kw;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              int64_t ch = (m / (M / G)) * (C / G) + c2;
              acc += (x.get_as_int64((ch * H + ih) * W + iw) - 3) *
                     w.get_as_int64(((m * (C / G) + c2) * KH + kh) * KW + kw);
            }
        double mult = static_cast<float>(static_cast<float>(0.05f * static_cast<float>(ws.get_as_double(m))) / 0.8f);
        double want = clampd(std::nearbyint(acc * mult - 4), -128, 127);
        EXPECT_EQ((*out)[0].get_as_double((m * OH + oh) * OW + ow), want);
      }
  EXPECT_EQ(c.expect_all_kernels_match(0, 0), 1);
  // Dilation, SAME_LOWER padding and uint8 with nonzero weight zero points.
  OpCase d("QLinearConv", 10);
  d.attr("dilations", ir::Attribute::from_ints({2, 1})).attr("auto_pad", ir::Attribute::from_string("SAME_LOWER"));
  d.input(DataType::kUInt8, {2, 3, 9, 8}, 0, 255)
      .input(scalar(DataType::kFloat32, 0.05))
      .input(scalar(DataType::kUInt8, 120));
  d.input(DataType::kUInt8, {5, 3, 3, 3}, 0, 255)
      .input(scalar(DataType::kFloat32, 0.01))
      .input(scalar(DataType::kUInt8, 128));
  d.input(scalar(DataType::kFloat32, 0.9)).input(scalar(DataType::kUInt8, 100));
  EXPECT_EQ(d.expect_all_kernels_match(0, 0), 1);
}

TEST(QLinearConv, SymbolicShapeAndErrors) {
  OpCase c("QLinearConv", 10);
  c.attr("auto_pad", ir::Attribute::from_string("SAME_UPPER")).attr("strides", ir::Attribute::from_ints({2, 2}));
  c.input(DataType::kUInt8, {1, 3, 8, 8}).input(scalar(DataType::kFloat32, 1)).input(scalar(DataType::kUInt8, 0));
  c.input(DataType::kUInt8, {5, 3, 3, 3}).input(scalar(DataType::kFloat32, 1)).input(scalar(DataType::kUInt8, 0));
  c.input(scalar(DataType::kFloat32, 1)).input(scalar(DataType::kUInt8, 0));
  ops::TensorType x{DataType::kUInt8, Shape{Dim::symbol("N"), Dim(3), Dim(9), Dim::symbol("W")}};
  ops::TensorType w{DataType::kUInt8, Shape{Dim(5), Dim(3), Dim(3), Dim(3)}};
  ops::TensorType f{DataType::kFloat32, Shape{}}, u{DataType::kUInt8, Shape{}};
  auto r = ops::infer_node(c.node(), {x, f, u, w, f, u, f, u}, std::vector<const Tensor*>(8, nullptr));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(shape_to_string(*(*r)[0].shape), "[N,5,5,?]");
  auto o = c.run();
  ASSERT_TRUE(o.ok()) << o.status().to_string();
  EXPECT_EQ((*o)[0].dims(), (Dims{1, 5, 4, 4}));
  OpCase bad("QLinearConv", 10);
  bad.attr("group", ir::Attribute::from_int(2));
  bad.input(DataType::kUInt8, {1, 3, 8, 8}).input(scalar(DataType::kFloat32, 1)).input(scalar(DataType::kUInt8, 0));
  bad.input(DataType::kUInt8, {4, 3, 3, 3}).input(scalar(DataType::kFloat32, 1)).input(scalar(DataType::kUInt8, 0));
  bad.input(scalar(DataType::kFloat32, 1)).input(scalar(DataType::kUInt8, 0));
  EXPECT_FALSE(bad.run().ok());
}

}  // namespace
}  // namespace kiln::test

#include <cmath>
#include <random>

#include "backends/cuda/device.h"
#include "harness/op_harness.h"

namespace kiln::test {
namespace {

using ir::Attribute;

Tensor f32(Dims d, std::vector<float> v) { return Tensor::from_vector<float>(DataType::kFloat32, std::move(d), v); }

TEST(BatchNormalization, MatchesFormula) {
  OpCase c("BatchNormalization", 15);
  c.attr("epsilon", Attribute::from_float(1e-2f));
  c.input(DataType::kFloat32, {2, 3, 4, 5}).input(DataType::kFloat32, {3}).input(DataType::kFloat32, {3});
  c.input(DataType::kFloat32, {3}).input(DataType::kFloat32, {3}, 0.5, 2);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  auto& in = c.inputs();
  for (int64_t i = 0; i < 120; ++i) {
    int64_t ch = (i / 20) % 3;
    double want = in[1]->get_as_double(ch) * (in[0]->get_as_double(i) - in[3]->get_as_double(ch)) /
                      std::sqrt(in[4]->get_as_double(ch) + 1e-2) +
                  in[2]->get_as_double(ch);
    ASSERT_NEAR((*out)[0].get_as_double(i), want, 1e-5) << i;
  }
  EXPECT_GE(c.expect_all_kernels_match(1e-6, 1e-6), 1);
}

TEST(BatchNormalization, TrainingModeUsesBatchStatistics) {
  OpCase c("BatchNormalization", 15);
  c.attr("training_mode", Attribute::from_int(1)).attr("momentum", Attribute::from_float(0.8f));
  c.input(DataType::kFloat32, {3, 2, 4}).input(DataType::kFloat32, {2}).input(DataType::kFloat32, {2});
  c.input(DataType::kFloat32, {2}).input(DataType::kFloat32, {2}, 0.5, 2).outputs(3);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  auto& in = c.inputs();
  for (int ch = 0; ch < 2; ++ch) {
    double m = 0, v = 0;
    for (int b = 0; b < 3; ++b)
      for (int i = 0; i < 4; ++i) m += in[0]->get_as_double((b * 2 + ch) * 4 + i) / 12;
    for (int b = 0; b < 3; ++b)
      for (int i = 0; i < 4; ++i) v += std::pow(in[0]->get_as_double((b * 2 + ch) * 4 + i) - m, 2) / 12;
    EXPECT_NEAR((*out)[1].get_as_double(ch), in[3]->get_as_double(ch) * 0.8 + m * 0.2, 1e-5);
    EXPECT_NEAR((*out)[2].get_as_double(ch), in[4]->get_as_double(ch) * 0.8 + v * 0.2, 1e-5);
    double y0 =
        in[1]->get_as_double(ch) * (in[0]->get_as_double(ch * 4) - m) / std::sqrt(v + 1e-5) + in[2]->get_as_double(ch);
    EXPECT_NEAR((*out)[0].get_as_double(ch * 4), y0, 1e-5);
  }
}

TEST(BatchNormalization, Errors) {
  OpCase c("BatchNormalization", 15);
  c.input(DataType::kFloat32, {2, 3, 4}).input(DataType::kFloat32, {4}).input(DataType::kFloat32, {3});
  c.input(DataType::kFloat32, {3}).input(DataType::kFloat32, {3});
  EXPECT_FALSE(c.run().ok());
  OpCase r("BatchNormalization", 15);
  r.input(DataType::kFloat32, {2}).input(DataType::kFloat32, {2}).input(DataType::kFloat32, {2});
  r.input(DataType::kFloat32, {2}).input(DataType::kFloat32, {2});
  EXPECT_FALSE(r.run().ok());
}

// Per-block mean / std check: y = scale * standardized + bias.
void expect_standardized(const Tensor& y, int64_t blocks, int64_t size, double scale, double bias, double tol) {
  for (int64_t b = 0; b < blocks; ++b) {
    double m = 0, v = 0;
    for (int64_t i = 0; i < size; ++i) m += y.get_as_double(b * size + i) / size;
    for (int64_t i = 0; i < size; ++i) v += std::pow(y.get_as_double(b * size + i) - m, 2) / size;
    EXPECT_NEAR(m, bias, tol) << "block " << b;
    EXPECT_NEAR(std::sqrt(v), std::fabs(scale), tol) << "block " << b;
  }
}

TEST(InstanceNormalization, StandardizesEachPlane) {
  OpCase c("InstanceNormalization", 22);
  c.attr("epsilon", Attribute::from_float(1e-6f));
  c.input(DataType::kFloat32, {2, 3, 4, 5}, -5, 5).input(f32({3}, {2, 2, 2})).input(f32({3}, {0.5, 0.5, 0.5}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  expect_standardized((*out)[0], 6, 20, 2, 0.5, 1e-4);
  EXPECT_GE(c.expect_all_kernels_match(1e-6, 1e-6), 1);
}

TEST(GroupNormalization, PerChannelAndPerGroupParameters) {
  // Opset 21: scale/bias per channel. With 2 groups of 2 channels and equal per-group params
  // it matches opset 18's per-group form.
  OpCase a("GroupNormalization", 21), b("GroupNormalization", 18);
  for (OpCase* c : {&a, &b})
    c->attr("num_groups", Attribute::from_int(2)).attr("epsilon", Attribute::from_float(1e-6f));
  a.input(DataType::kFloat32, {3, 4, 2, 2}).input(f32({4}, {1.5, 1.5, -2, -2})).input(f32({4}, {1, 1, 3, 3}));
  b.input(*a.inputs()[0]).input(f32({2}, {1.5, -2})).input(f32({2}, {1, 3}));
  auto oa = a.run(), ob = b.run();
  ASSERT_TRUE(oa.ok()) << oa.status().to_string();
  ASSERT_TRUE(ob.ok()) << ob.status().to_string();
  EXPECT_TRUE(tensors_close((*oa)[0], (*ob)[0], 0, 0));
  // Block (n, g) is 8 contiguous elements; group 0 has scale 1.5 bias 1.
  const Tensor& y = (*oa)[0];
  Tensor g0 = Tensor::empty(DataType::kFloat32, {8});
  for (int i = 0; i < 8; ++i) g0.set_from_double(i, y.get_as_double(i));
  expect_standardized(g0, 1, 8, 1.5, 1, 1e-3);
  EXPECT_GE(a.expect_all_kernels_match(1e-6, 1e-6), 1);
  OpCase bad("GroupNormalization", 21);
  bad.attr("num_groups", Attribute::from_int(3));
  bad.input(DataType::kFloat32, {1, 4, 2}).input(DataType::kFloat32, {4}).input(DataType::kFloat32, {4});
  EXPECT_FALSE(bad.run().ok());
}

// LayerNormalization over the trailing dims from `axis`, double precision.
void naive_layer_norm(const Tensor& x, const Tensor& w, const Tensor* b, int64_t axis, double eps, bool rms,
                      std::vector<double>& y, std::vector<double>& mean, std::vector<double>& inv) {
  int64_t cols = 1;
  for (int64_t d = axis; d < x.rank(); ++d) cols *= x.dim(d);
  int64_t rows = x.numel() / cols;
  y.assign(x.numel(), 0);
  mean.assign(rows, 0);
  inv.assign(rows, 0);
  for (int64_t r = 0; r < rows; ++r) {
    double m = 0, v = 0;
    if (!rms)
      for (int64_t j = 0; j < cols; ++j) m += x.get_as_double(r * cols + j) / cols;
    for (int64_t j = 0; j < cols; ++j) v += std::pow(x.get_as_double(r * cols + j) - m, 2) / cols;
    double is = 1 / std::sqrt(v + eps);
    for (int64_t j = 0; j < cols; ++j) {
      // W / B cover either the normalized dims or all of X.
      int64_t wi = w.numel() == cols ? j : r * cols + j;
      y[r * cols + j] = (x.get_as_double(r * cols + j) - m) * is * w.get_as_double(wi) + (b ? b->get_as_double(wi) : 0);
    }
    mean[r] = m;
    inv[r] = is;
  }
}

TEST(LayerNormalization, AllAxesWithStatistics) {
  const Dims xd{2, 3, 4, 5};
  for (int64_t axis = -4; axis < 4; ++axis) {
    int64_t a = axis < 0 ? axis + 4 : axis;
    Dims wd(xd.begin() + a, xd.end());
    OpCase c("LayerNormalization", 17);
    c.attr("axis", Attribute::from_int(axis)).attr("epsilon", Attribute::from_float(0.1f)).outputs(3);
    c.input(DataType::kFloat32, xd, -3, 3).input(DataType::kFloat32, wd).input(DataType::kFloat32, wd);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    std::vector<double> y, m, inv;
    naive_layer_norm(*c.inputs()[0], *c.inputs()[1], &*c.inputs()[2], a, 0.1, false, y, m, inv);
    for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR((*out)[0].get_as_double(i), y[i], 1e-5) << axis;
    Dims sd(xd.begin(), xd.begin() + a);
    sd.resize(4, 1);
    EXPECT_EQ((*out)[1].dims(), sd);
    EXPECT_EQ((*out)[1].dtype(), DataType::kFloat32);
    for (size_t r = 0; r < m.size(); ++r) {
      EXPECT_NEAR((*out)[1].get_as_double(r), m[r], 1e-5);
      EXPECT_NEAR((*out)[2].get_as_double(r), inv[r], 1e-4);
    }
    EXPECT_GE(c.expect_all_kernels_match(1e-6, 1e-6), 1);
  }
}

TEST(LayerNormalization, BroadcastScaleNoBiasAndErrors) {
  OpCase c("LayerNormalization", 17);
  c.input(DataType::kFloat32, {3, 8}).input(DataType::kFloat32, {1});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  Tensor w = Tensor::empty(DataType::kFloat32, {8});
  for (int i = 0; i < 8; ++i) w.set_from_double(i, c.inputs()[1]->get_as_double(0));
  std::vector<double> y, m, inv;
  naive_layer_norm(*c.inputs()[0], w, nullptr, 1, 1e-5, false, y, m, inv);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR((*out)[0].get_as_double(i), y[i], 1e-5);
  OpCase bad("LayerNormalization", 17);
  bad.input(DataType::kFloat32, {3, 8}).input(DataType::kFloat32, {7});
  EXPECT_FALSE(bad.run().ok());
  OpCase ax("LayerNormalization", 17);
  ax.attr("axis", Attribute::from_int(2)).input(DataType::kFloat32, {3, 8}).input(DataType::kFloat32, {8});
  EXPECT_FALSE(ax.run().ok());
}

TEST(RMSNormalization, MatchesNaive) {
  for (int64_t axis : {-1, 1, 0}) {
    Dims xd{2, 3, 5};
    int64_t a = axis < 0 ? axis + 3 : axis;
    OpCase c("RMSNormalization", 23);
    c.attr("axis", Attribute::from_int(axis)).attr("epsilon", Attribute::from_float(0.1f));
    c.input(DataType::kFloat32, xd, -2, 2).input(DataType::kFloat32, Dims(xd.begin() + a, xd.end()));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    std::vector<double> y, m, inv;
    naive_layer_norm(*c.inputs()[0], *c.inputs()[1], nullptr, a, 0.1, true, y, m, inv);
    for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR((*out)[0].get_as_double(i), y[i], 1e-5);
    EXPECT_GE(c.expect_all_kernels_match(1e-6, 1e-6), 1);
  }
}

TEST(SkipLayerNormalization, EqualsLayerNormOfTheSum) {
  OpCase c("SkipLayerNormalization", 1, "com.microsoft");
  c.attr("epsilon", Attribute::from_float(1e-5f)).outputs(4);
  c.input(DataType::kFloat32, {2, 3, 8}).input(DataType::kFloat32, {2, 3, 8}).input(DataType::kFloat32, {8});
  c.input(DataType::kFloat32, {8}).input(DataType::kFloat32, {8});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  auto& in = c.inputs();
  Tensor sum = Tensor::empty(DataType::kFloat32, {2, 3, 8});
  for (int64_t i = 0; i < 48; ++i)
    sum.set_from_double(i, in[0]->get_as_double(i) + in[1]->get_as_double(i) + in[4]->get_as_double(i % 8));
  std::vector<double> y, m, inv;
  naive_layer_norm(sum, *in[2], &*in[3], 2, 1e-5, false, y, m, inv);
  for (int64_t i = 0; i < 48; ++i) {
    EXPECT_NEAR((*out)[0].get_as_double(i), y[i], 1e-5);
    EXPECT_NEAR((*out)[3].get_as_double(i), sum.get_as_double(i), 1e-6);
  }
  EXPECT_EQ((*out)[1].dims(), (Dims{2, 3, 1}));
  EXPECT_NEAR((*out)[1].get_as_double(4), m[4], 1e-5);
}

TEST(LpNormalization, UnitNormsAndZeroVectors) {
  for (int64_t p : {1, 2}) {
    OpCase c("LpNormalization", 22);
    c.attr("axis", Attribute::from_int(1)).attr("p", Attribute::from_int(p));
    Tensor x = Tensor::empty(DataType::kFloat32, {2, 3, 4});
    std::mt19937 rng(5);
    x = random_tensor(DataType::kFloat32, {2, 3, 4}, rng);
    for (int k = 0; k < 3; ++k) x.set_from_double(k * 4 + 1, 0);  // column (0, :, 1) is zero
    c.input(x);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    for (int64_t o = 0; o < 2; ++o)
      for (int64_t i = 0; i < 4; ++i) {
        double s = 0;
        for (int64_t k = 0; k < 3; ++k) {
          double v = (*out)[0].get_as_double((o * 3 + k) * 4 + i);
          s += p == 1 ? std::fabs(v) : v * v;
        }
        EXPECT_NEAR(s, o == 0 && i == 1 ? 0.0 : 1.0, 1e-5);
      }
  }
  OpCase bad("LpNormalization", 22);
  bad.attr("p", Attribute::from_int(3)).input(DataType::kFloat32, {2, 2});
  EXPECT_FALSE(bad.run().ok());
}

TEST(MeanVarianceNormalization, ZeroMeanUnitVariance) {
  OpCase c("MeanVarianceNormalization", 13);
  c.input(DataType::kFloat32, {3, 2, 4, 3}, -4, 4);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& y = (*out)[0];
  for (int64_t ch = 0; ch < 2; ++ch) {
    double m = 0, v = 0;
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t i = 0; i < 12; ++i) m += y.get_as_double((n * 2 + ch) * 12 + i) / 36;
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t i = 0; i < 12; ++i) v += std::pow(y.get_as_double((n * 2 + ch) * 12 + i) - m, 2) / 36;
    EXPECT_NEAR(m, 0, 1e-5);
    EXPECT_NEAR(v, 1, 1e-4);
  }
}

TEST(LRN, MatchesNaive) {
  OpCase c("LRN", 13);
  c.attr("size", Attribute::from_int(4)).attr("alpha", Attribute::from_float(2e-2f));
  c.attr("beta", Attribute::from_float(0.5f)).attr("bias", Attribute::from_float(2.f));
  c.input(DataType::kFloat32, {2, 5, 3, 3}, -3, 3);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t ch = 0; ch < 5; ++ch)
      for (int64_t i = 0; i < 9; ++i) {
        double s = 0;
        for (int64_t k = ch - 1; k <= ch + 2; ++k)  // size 4: one before, two after
          if (k >= 0 && k < 5) s += std::pow(x.get_as_double((n * 5 + k) * 9 + i), 2);
        int64_t e = (n * 5 + ch) * 9 + i;
        EXPECT_NEAR((*out)[0].get_as_double(e), x.get_as_double(e) / std::pow(2 + 2e-2 / 4 * s, 0.5), 1e-5);
      }
  OpCase no_size("LRN", 13);
  no_size.input(DataType::kFloat32, {1, 2, 2, 2});
  EXPECT_FALSE(no_size.run().ok());
}

// ---- Cases for the CUDA kernels; on a machine without a GPU only the CPU kernels run.

const std::vector<Tol> kFloatTols = {
    {DataType::kFloat32, 1e-5, 1e-5}, {DataType::kFloat16, 1e-2, 1e-2}, {DataType::kBFloat16, 3e-2, 3e-2}};

TEST(BatchNormalization, CudaRanksDtypesAndMixedParamTypes) {
  for (const Tol& t : kFloatTols)
    for (const Dims& x : {Dims{2, 3}, Dims{2, 5, 7}, Dims{1, 3, 7, 5}, Dims{2, 2, 3, 4, 5}})
      for (DataType pt : {t.dtype, DataType::kFloat32}) {
        OpCase c("BatchNormalization", 15);
        c.attr("epsilon", Attribute::from_float(1e-3f));
        c.input(t.dtype, x, -3, 3).input(pt, {x[1]}).input(pt, {x[1]}).input(pt, {x[1]}).input(pt, {x[1]}, 0.5, 2);
        EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
            << dtype_name(t.dtype) << " params " << dtype_name(pt) << " " << dims_to_string(x);
      }
}

// One LayerNormalization case: X dims, axis, scale dims, bias dims (or none), Mean/InvStdDev wanted.
struct LayerNormCase {
  Dims x;
  int64_t axis;
  Dims scale;
  std::optional<Dims> bias;
  bool stats;
};

// Every kernel against the reference on each case, in every float dtype.
void expect_layer_norm_cases(const std::vector<LayerNormCase>& cases, float epsilon) {
  for (const Tol& t : kFloatTols)
    for (size_t i = 0; i < cases.size(); ++i) {
      const LayerNormCase& l = cases[i];
      OpCase c("LayerNormalization", 17);
      c.attr("axis", Attribute::from_int(l.axis)).attr("epsilon", Attribute::from_float(epsilon));
      if (l.stats) c.outputs(3);
      c.input(t.dtype, l.x, -3, 3).input(t.dtype, l.scale);
      if (l.bias) c.input(t.dtype, *l.bias);
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels()) << dtype_name(t.dtype) << " case " << i;
    }
}

TEST(LayerNormalization, CudaAxesBroadcastParamsStatsAndDtypes) {
  std::vector<LayerNormCase> cases = {
      {{2, 3, 5, 7}, -1, {7}, Dims{7}, false},
      {{2, 3, 5, 7}, -2, {7}, Dims{5, 7}, true},  // scale broadcast over the normalized dims
      {{2, 3, 5, 7}, 1, {3, 5, 7}, std::nullopt, true},
      {{3, 1000}, -1, {1000}, Dims{1000}, false},  // block per row
      {{2, 5000}, 1, {5000}, Dims{1}, true},
      {{4, 33}, 0, {4, 33}, Dims{4, 33}, false},
  };
  expect_layer_norm_cases(cases, 1e-3f);
}

TEST(RMSNormalization, CudaAxesAndDtypes) {
  for (const Tol& t : kFloatTols)
    for (auto [x, axis] :
         std::vector<std::pair<Dims, int64_t>>{{{2, 3, 5}, -1}, {{2, 3, 5}, 1}, {{3, 2049}, -1}, {{2, 7, 9}, 0}}) {
      OpCase c("RMSNormalization", 23);
      c.attr("axis", Attribute::from_int(axis));
      const int64_t a = axis < 0 ? axis + static_cast<int64_t>(x.size()) : axis;
      c.input(t.dtype, x, -2, 2).input(t.dtype, Dims(x.begin() + a, x.end()));
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
          << dtype_name(t.dtype) << " " << dims_to_string(x) << " axis " << axis;
    }
}

TEST(SkipLayerNormalization, CudaBroadcastSkipOptionalInputsAndOutputs) {
  for (const Tol& t : kFloatTols)
    for (int variant = 0; variant < 4; ++variant) {
      OpCase c("SkipLayerNormalization", 1, "com.microsoft");
      c.attr("epsilon", Attribute::from_float(1e-5f));
      const int64_t h = variant == 3 ? 1536 : 24;
      c.outputs(variant == 0 ? 1 : 4);
      c.input(t.dtype, {2, 3, h}).input(t.dtype, variant == 1 ? Dims{3, h} : Dims{2, 3, h}).input(t.dtype, {h});
      if (variant == 2) {
        c.no_input().input(t.dtype, {h});  // bias without beta
      } else {
        c.input(t.dtype, {h});
        if (variant != 0) c.input(t.dtype, {h});
      }
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
          << dtype_name(t.dtype) << " variant " << variant;
    }
}

TEST(GroupNormalization, CudaPerChannelPerGroupAndDtypes) {
  for (const Tol& t : kFloatTols)
    for (int opset : {18, 21})
      for (auto [x, groups] : std::vector<std::pair<Dims, int64_t>>{
               {{2, 4, 3, 5}, 2}, {{1, 6, 7}, 3}, {{2, 8, 33, 31}, 4}, {{1, 3, 2, 2, 3}, 1}}) {
        OpCase c("GroupNormalization", opset);
        c.attr("num_groups", Attribute::from_int(groups)).attr("epsilon", Attribute::from_float(1e-4f));
        const int64_t np = opset == 18 ? groups : x[1];
        c.input(t.dtype, x, -4, 4).input(t.dtype, {np}).input(t.dtype, {np});
        EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
            << dtype_name(t.dtype) << " opset " << opset << " " << dims_to_string(x);
      }
}

TEST(InstanceNormalization, CudaOddSizesAndDtypes) {
  for (const Tol& t : kFloatTols)
    for (const Dims& x : {Dims{1, 3, 7, 5}, Dims{2, 2, 41, 43}, Dims{2, 4, 9}, Dims{1, 2, 3, 4, 5}}) {
      OpCase c("InstanceNormalization", 22);
      c.input(t.dtype, x, -5, 5).input(t.dtype, {x[1]}).input(t.dtype, {x[1]});
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
          << dtype_name(t.dtype) << " " << dims_to_string(x);
    }
}

// Register-resident kernels (row_norm_fast.cuh): rows that are whole 16-byte packs of at most
// 4096 elements with contiguous parameters; warp per row up to 1024 (4 rows per block, so row
// counts not a multiple of 4 are included), block per row above. The other cases take the
// generic kernels (cols not whole packs, > 4096, broadcast parameters or skip).
TEST(LayerNormalization, CudaRegisterRowsAndFallbacks) {
  std::vector<LayerNormCase> cases = {
      {{2, 5, 768}, -1, {768}, Dims{768}, true},           // BERT rows, warp per row, 10 rows
      {{3, 1024}, -1, {1024}, std::nullopt, false},        // longest warp row, no bias
      {{7, 1024}, 1, {1024}, Dims{1024}, true},            // 7 rows: last block partly empty
      {{5, 2048}, -1, {2048}, Dims{2048}, true},           // block per row
      {{2, 4096}, -1, {4096}, std::nullopt, true},         // longest fast row
      {{3, 2, 8, 96}, -2, {8, 96}, Dims{8, 96}, true},     // several normalized dims (768)
      {{2, 3, 4, 384}, 2, {4, 384}, Dims{4, 384}, false},  // block per row over two dims (1536)
      {{4, 512}, -1, {512}, Dims{512}, true},              // 2 packs a lane (fp16; fp32: 4 of 8 slots)
      {{3, 264}, -1, {264}, Dims{264}, true},              // ragged lanes: 2 or 1 packs (fp32: 3 or 2)
      {{9, 8}, -1, {8}, Dims{8}, true},                    // one pack per row (fp16)
      {{6, 100}, -1, {100}, Dims{100}, true},              // fp32 packs only; fp16/bf16 fall back
      {{3, 770}, -1, {770}, Dims{770}, false},             // not whole packs: fallback
      {{2, 4104}, -1, {4104}, Dims{4104}, true},           // too long: fallback
      {{3, 768}, -1, {1}, Dims{768}, false},               // broadcast gamma: fallback
      {{4, 768}, -1, {768}, Dims{1}, true},                // broadcast beta: fallback
  };
  expect_layer_norm_cases(cases, 1e-5f);
}

TEST(LayerNormalization, CudaRegisterRowsOffsetMean) {
  // Rows far from zero mean: the two-pass variance keeps the spread exact.
  for (const Tol& t : kFloatTols)
    for (const Dims& x : {Dims{5, 768}, Dims{3, 2048}}) {
      OpCase c("LayerNormalization", 17);
      c.outputs(3).input(t.dtype, x, 20, 24).input(t.dtype, {x[1]}).input(t.dtype, {x[1]});
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
          << dtype_name(t.dtype) << " " << dims_to_string(x);
    }
}

TEST(RMSNormalization, CudaRegisterRowsAndFallbacks) {
  for (const Tol& t : kFloatTols)
    for (auto [x, axis] : std::vector<std::pair<Dims, int64_t>>{{{5, 768}, -1},
                                                                {{3, 1024}, -1},
                                                                {{5, 2048}, -1},
                                                                {{2, 4096}, 1},
                                                                {{2, 3, 5, 64}, -2},
                                                                {{3, 772}, -1},  // fp32 only
                                                                {{2, 770}, -1},
                                                                {{2, 4352}, -1}}) {
      OpCase c("RMSNormalization", 23);
      c.attr("axis", Attribute::from_int(axis)).attr("epsilon", Attribute::from_float(1e-5f));
      const int64_t a = axis < 0 ? axis + static_cast<int64_t>(x.size()) : axis;
      c.input(t.dtype, x, -2, 2).input(t.dtype, Dims(x.begin() + a, x.end()));
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
          << dtype_name(t.dtype) << " " << dims_to_string(x) << " axis " << axis;
    }
}

TEST(SkipLayerNormalization, CudaRegisterRowsAndFallbacks) {
  struct S {
    Dims x, skip;
    bool beta, bias;
    int outputs;
  };
  std::vector<S> cases = {
      {{2, 5, 768}, {2, 5, 768}, true, true, 4},     // BERT: warp per row, sum output
      {{3, 1024}, {3, 1024}, false, false, 1},       // no beta, no bias
      {{2, 3, 512}, {2, 3, 512}, true, true, 4},     // half the warp kernel's pack slots
      {{5, 264}, {5, 264}, true, false, 2},          // ragged lanes (2 or 1 packs of fp16)
      {{1, 7, 768}, {7, 768}, false, true, 3},       // bias without beta; skip differs only by a leading 1
      {{2, 3, 4096}, {2, 3, 4096}, true, true, 4},   // block per row
      {{5, 2048}, {5, 2048}, true, false, 2},        // block per row, mean only
      {{3, 1536}, {3, 1536}, false, true, 4},        // block per row, bias without beta
      {{6, 16}, {6, 16}, true, true, 4},             // two packs per row (fp16)
      {{2, 3, 768}, {3, 768}, true, true, 4},        // skip broadcast over the batch: rows repeat (fast)
      {{3, 4, 2, 768}, {1, 2, 768}, true, true, 4},  // the same over two leading dims, one of them 1 in skip
      {{2, 3, 768}, {2, 1, 768}, true, true, 4},     // broadcast in the middle: fallback
      {{4, 100}, {4, 100}, true, true, 4},           // fp32 fast, fp16/bf16 fallback
      {{2, 4104}, {2, 4104}, true, true, 4},         // too long: fallback
  };
  for (const Tol& t : kFloatTols)
    for (size_t i = 0; i < cases.size(); ++i) {
      const S& s = cases[i];
      const int64_t h = s.x.back();
      OpCase c("SkipLayerNormalization", 1, "com.microsoft");
      c.attr("epsilon", Attribute::from_float(1e-5f)).outputs(s.outputs);
      c.input(t.dtype, s.x, -2, 2).input(t.dtype, s.skip, -2, 2).input(t.dtype, {h});
      if (s.beta)
        c.input(t.dtype, {h});
      else if (s.bias)
        c.no_input();
      if (s.bias) c.input(t.dtype, {h});
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels()) << dtype_name(t.dtype) << " case " << i;
    }
}

// GatherSkipLayerNormalization (kiln): the table's rows at the indices (negative ones from
// the end), plus skip, normalized as SkipLayerNormalization; the CUDA kernels (warp and
// block per row, register and generic paths) against the reference on a GPU.
Tensor index_tensor(DataType t, Dims d, int64_t rows, std::mt19937& rng) {
  Tensor ids = Tensor::empty(t, d);
  std::uniform_int_distribution<int64_t> pick(-rows, rows - 1);
  for (int64_t i = 0; i < ids.numel(); ++i) ids.set_from_double(i, static_cast<double>(pick(rng)));
  return ids;
}

TEST(GatherSkipLayerNormalization, EqualsSkipLayerNormOfTheGatheredRows) {
  std::mt19937 rng(11);
  for (DataType it : {DataType::kInt64, DataType::kInt32}) {
    const int64_t rows = 9, h = 16;
    Tensor table = random_tensor(DataType::kFloat32, {rows, h}, rng);
    Tensor ids = index_tensor(it, {2, 5}, rows, rng);
    OpCase c("GatherSkipLayerNormalization", 1, "kiln");
    c.attr("epsilon", Attribute::from_float(1e-5f));
    c.input(table).input(ids).input(DataType::kFloat32, {5, h}).input(DataType::kFloat32, {h}, 0.5, 1.5);
    c.input(DataType::kFloat32, {h});
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    auto& in = c.inputs();
    ASSERT_EQ((*out)[0].dims(), (Dims{2, 5, h}));
    Tensor sum = Tensor::empty(DataType::kFloat32, {2, 5, h});
    for (int64_t r = 0; r < 10; ++r) {
      int64_t i = static_cast<int64_t>(ids.get_as_double(r));
      if (i < 0) i += rows;
      for (int64_t j = 0; j < h; ++j)
        sum.set_from_double(r * h + j, table.get_as_double(i * h + j) + in[2]->get_as_double((r % 5) * h + j));
    }
    std::vector<double> y, m, inv;
    naive_layer_norm(sum, *in[3], &*in[4], 2, 1e-5, false, y, m, inv);
    for (int64_t i = 0; i < 2 * 5 * h; ++i) EXPECT_NEAR((*out)[0].get_as_double(i), y[i], 1e-5) << i;
  }
}

TEST(GatherSkipLayerNormalization, RejectsIndicesOutOfRangeAndBadTables) {
  OpCase oob("GatherSkipLayerNormalization", 1, "kiln");
  oob.input(DataType::kFloat32, {4, 8}).input(Tensor::from_vector<int64_t>(DataType::kInt64, {2}, {1, 4}));
  oob.input(DataType::kFloat32, {8}).input(DataType::kFloat32, {8});
  auto r = oob.run();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("table index 4 is out of range for a dim of size 4"), std::string::npos)
      << r.status().to_string();
  OpCase flat("GatherSkipLayerNormalization", 1, "kiln");
  flat.input(DataType::kFloat32, {32}).input(Tensor::from_vector<int64_t>(DataType::kInt64, {1}, {0}));
  flat.input(DataType::kFloat32, {8}).input(DataType::kFloat32, {8});
  EXPECT_FALSE(flat.run().ok());
}

TEST(GatherSkipLayerNormalization, CudaRowsIndexTypesAndFallbacks) {
  struct S {
    Dims ids, skip;
    int64_t h;
    bool beta;
  };
  // BERT's embeddings (warp per row, skip repeated over the batch), block per row, a skip
  // of the full shape, and 20 columns (not whole 16-byte packs: the generic kernel).
  const std::vector<S> cases = {{{2, 7}, {7, 768}, 768, true},
                                {{3}, {3, 2048}, 2048, false},
                                {{2, 3}, {2, 3, 64}, 64, true},
                                {{4, 2}, {1, 2, 20}, 20, true}};
  std::mt19937 rng(12);
  for (const Tol& t : kFloatTols)
    for (DataType it : {DataType::kInt64, DataType::kInt32})
      for (const S& cs : cases) {
        OpCase c("GatherSkipLayerNormalization", 1, "kiln");
        c.attr("epsilon", Attribute::from_float(1e-5f));
        c.input(t.dtype, {11, cs.h}).input(index_tensor(it, cs.ids, 11, rng)).input(t.dtype, cs.skip);
        c.input(t.dtype, {cs.h}, 0.5, 1.5);
        if (cs.beta) c.input(t.dtype, {cs.h});
        EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
            << dtype_name(t.dtype) << " " << dtype_name(it) << " " << dims_to_string(cs.ids) << " h " << cs.h;
      }
}

// ConcatSkipLayerNormalization (kiln): SkipLayerNormalization of head's rows then rest's, a
// batch at a time, head shared by every batch ([1, n0, H]) or one a batch; every output;
// the CUDA kernels (warp and block per row, the generic path for 20 columns, a bias input)
// against the reference on a GPU.
Tensor concat_rows(const Tensor& head, const Tensor& rest) {
  const int64_t b = rest.dim(0), n0 = head.dim(1), n1 = rest.dim(1), h = rest.dim(2);
  Tensor x = Tensor::empty(rest.dtype(), {b, n0 + n1, h});
  for (int64_t i = 0; i < b; ++i)
    for (int64_t t = 0; t < n0 + n1; ++t)
      for (int64_t j = 0; j < h; ++j)
        x.set_from_double((i * (n0 + n1) + t) * h + j,
                          t < n0 ? head.get_as_double(((head.dim(0) == 1 ? 0 : i) * n0 + t) * h + j)
                                 : rest.get_as_double((i * n1 + t - n0) * h + j));
  return x;
}

TEST(ConcatSkipLayerNormalization, EqualsSkipLayerNormOfTheConcatenation) {
  std::mt19937 rng(21);
  for (int64_t head_batch : {1, 3}) {
    SCOPED_TRACE("head batch " + std::to_string(head_batch));
    const int64_t b = 3, n0 = 2, n1 = 5, h = 16;
    Tensor head = random_tensor(DataType::kFloat32, {head_batch, n0, h}, rng);
    Tensor rest = random_tensor(DataType::kFloat32, {b, n1, h}, rng);
    Tensor skip = random_tensor(DataType::kFloat32, {1, n0 + n1, h}, rng);
    Tensor gamma = random_tensor(DataType::kFloat32, {h}, rng, 0.5, 1.5);
    Tensor beta = random_tensor(DataType::kFloat32, {h}, rng);
    Tensor bias = random_tensor(DataType::kFloat32, {h}, rng);
    OpCase c("ConcatSkipLayerNormalization", 1, "kiln");
    c.attr("epsilon", Attribute::from_float(1e-5f)).outputs(4);
    c.input(head).input(rest).input(skip).input(gamma).input(beta).input(bias);
    OpCase want("SkipLayerNormalization", 1, "com.microsoft");
    want.attr("epsilon", Attribute::from_float(1e-5f)).outputs(4);
    want.input(concat_rows(head, rest)).input(skip).input(gamma).input(beta).input(bias);
    auto got = c.run();
    auto ref = want.run();
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    ASSERT_TRUE(ref.ok()) << ref.status().to_string();
    ASSERT_EQ((*got)[0].dims(), (Dims{b, n0 + n1, h}));
    for (size_t o = 0; o < 4; ++o) {
      ASSERT_EQ((*got)[o].dims(), (*ref)[o].dims()) << "output " << o;
      for (int64_t i = 0; i < (*ref)[o].numel(); ++i)
        EXPECT_NEAR((*got)[o].get_as_double(i), (*ref)[o].get_as_double(i), 1e-6) << "output " << o << " at " << i;
    }
  }
}

TEST(ConcatSkipLayerNormalization, RejectsMismatchedHeads) {
  struct Bad {
    Dims head, rest;
    const char* says;
  };
  for (const Bad& k : {Bad{{2, 1, 8}, {3, 4, 8}, "neither 1 nor rest's"},
                       Bad{{1, 1, 6}, {3, 4, 8}, "hidden sizes differ"}, Bad{{1, 8}, {3, 4, 8}, "rank 3"}}) {
    OpCase c("ConcatSkipLayerNormalization", 1, "kiln");
    c.input(DataType::kFloat32, k.head).input(DataType::kFloat32, k.rest);
    c.input(DataType::kFloat32, {8}).input(DataType::kFloat32, {8});
    auto r = c.run();
    ASSERT_FALSE(r.ok()) << dims_to_string(k.head);
    EXPECT_NE(r.status().message().find(k.says), std::string::npos) << r.status().to_string();
  }
}

TEST(ConcatSkipLayerNormalization, CudaSharedAndBatchedHeads) {
  struct S {
    int64_t head_batch, n0, n1, h;
    bool bias;
  };
  // ViT-B/16's class token (one set, warp per row), a batched head, block per row, and 20
  // columns (not whole 16-byte packs: the generic kernel).
  const std::vector<S> cases = {
      {1, 1, 196, 768, false}, {4, 2, 9, 64, true}, {1, 3, 5, 2048, false}, {4, 1, 6, 20, true}};
  for (const Tol& t : kFloatTols)
    for (const S& cs : cases) {
      OpCase c("ConcatSkipLayerNormalization", 1, "kiln");
      c.attr("epsilon", Attribute::from_float(1e-5f)).outputs(4);
      c.input(t.dtype, {cs.head_batch, cs.n0, cs.h}).input(t.dtype, {4, cs.n1, cs.h});
      c.input(t.dtype, {1, cs.n0 + cs.n1, cs.h}).input(t.dtype, {cs.h}, 0.5, 1.5).input(t.dtype, {cs.h});
      if (cs.bias) c.input(t.dtype, {cs.h});
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
          << dtype_name(t.dtype) << " head batch " << cs.head_batch << " h " << cs.h;
    }
}

}  // namespace
}  // namespace kiln::test

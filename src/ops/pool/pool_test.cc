#include <cmath>

#include "backends/cuda/device.h"
#include "harness/op_harness.h"

namespace kiln::test {
namespace {

using ir::Attribute;

struct Pool2d {
  int64_t n = 1, c = 2, h = 9, w = 8, kh = 3, kw = 2;
  std::vector<int64_t> strides{1, 1}, dilations{1, 1}, pads{0, 0, 0, 0};
  bool ceil = false, include_pad = false;
};

int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe, bool ceil) {
  double v = static_cast<double>(in + pb + pe - ((k - 1) * d + 1)) / static_cast<double>(s) + 1;
  int64_t o = ceil ? static_cast<int64_t>(std::ceil(v)) : static_cast<int64_t>(std::floor(v));
  if (ceil && (o - 1) * s >= in + pb) --o;
  return o;
}

// Independent 2-D pooling in double: "max", "avg" or "lp<p>".
Tensor naive_pool(const Pool2d& p, const std::string& kind, const Tensor& x, int lp = 2) {
  int64_t oh = out_size(p.h, p.kh, p.strides[0], p.dilations[0], p.pads[0], p.pads[2], p.ceil);
  int64_t ow = out_size(p.w, p.kw, p.strides[1], p.dilations[1], p.pads[1], p.pads[3], p.ceil);
  Tensor y = Tensor::zeros(DataType::kFloat32, {p.n, p.c, oh, ow});
  for (int64_t pl = 0; pl < p.n * p.c; ++pl)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        double best = -INFINITY, sum = 0;
        int64_t valid = 0, padded = 0;
        for (int64_t a = 0; a < p.kh; ++a)
          for (int64_t b = 0; b < p.kw; ++b) {
            int64_t ih = i * p.strides[0] - p.pads[0] + a * p.dilations[0];
            int64_t iw = j * p.strides[1] - p.pads[1] + b * p.dilations[1];
            if (ih < p.h + p.pads[2] && iw < p.w + p.pads[3]) ++padded;
            if (ih < 0 || ih >= p.h || iw < 0 || iw >= p.w) continue;
            double v = x.get_as_double((pl * p.h + ih) * p.w + iw);
            best = std::max(best, v);
            sum += kind == "lp" ? std::pow(std::fabs(v), lp) : v;
            ++valid;
          }
        double r = kind == "max"   ? best
                   : kind == "avg" ? sum / static_cast<double>(p.include_pad ? padded : valid)
                                   : std::pow(sum, 1.0 / lp);
        y.set_from_double((pl * oh + i) * ow + j, r);
      }
  return y;
}

OpCase make_pool(const std::string& op, const Pool2d& p) {
  OpCase c(op, 22);
  c.attr("kernel_shape", Attribute::from_ints({p.kh, p.kw})).attr("strides", Attribute::from_ints(p.strides));
  c.attr("dilations", Attribute::from_ints(p.dilations)).attr("pads", Attribute::from_ints(p.pads));
  c.attr("ceil_mode", Attribute::from_int(p.ceil));
  if (op == "AveragePool") c.attr("count_include_pad", Attribute::from_int(p.include_pad));
  c.input(DataType::kFloat32, {p.n, p.c, p.h, p.w}, -3, 3);
  return c;
}

std::vector<Pool2d> pool_cases() {
  std::vector<Pool2d> v;
  v.push_back({});
  Pool2d a;
  a.strides = {2, 2}, a.pads = {1, 1, 1, 0};
  v.push_back(a);
  Pool2d b;
  b.strides = {3, 2}, b.ceil = true, b.h = 10, b.w = 7;
  v.push_back(b);
  Pool2d c;
  c.dilations = {2, 2}, c.pads = {2, 1, 2, 1}, c.include_pad = true;
  v.push_back(c);
  Pool2d d;
  d.kh = 3, d.kw = 3, d.strides = {3, 3}, d.pads = {1, 1, 1, 1}, d.ceil = true, d.include_pad = true, d.h = 5, d.w = 5;
  v.push_back(d);
  Pool2d e;
  e.n = 2, e.c = 3, e.kh = 5, e.kw = 5, e.strides = {2, 3}, e.dilations = {1, 2}, e.ceil = true, e.h = 17, e.w = 19;
  v.push_back(e);
  return v;
}

TEST(MaxPool, PrecomputedPadsHandChecked) {
  std::vector<float> xs(25);
  for (int i = 0; i < 25; ++i) xs[i] = static_cast<float>(i + 1);
  OpCase c("MaxPool", 12);
  c.attr("kernel_shape", Attribute::from_ints({5, 5})).attr("pads", Attribute::from_ints({2, 2, 2, 2}));
  c.input(Tensor::from_vector<float>(DataType::kFloat32, {1, 1, 5, 5}, xs));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  std::vector<float> want = {13, 14, 15, 15, 15, 18, 19, 20, 20, 20, 23, 24, 25,
                             25, 25, 23, 24, 25, 25, 25, 23, 24, 25, 25, 25};
  EXPECT_TRUE(tensors_close((*out)[0], Tensor::from_vector<float>(DataType::kFloat32, {1, 1, 5, 5}, want), 0, 0));
}

TEST(MaxPool, RandomCasesMatchNaive) {
  auto cases = pool_cases();
  for (size_t i = 0; i < cases.size(); ++i) {
    OpCase c = make_pool("MaxPool", cases[i]);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_TRUE(tensors_close((*out)[0], naive_pool(cases[i], "max", *c.inputs()[0]), 0, 0)) << "case " << i;
    EXPECT_GE(c.expect_all_kernels_match(0, 0), 1);
  }
}

TEST(AveragePool, RandomCasesMatchNaive) {
  auto cases = pool_cases();
  for (size_t i = 0; i < cases.size(); ++i) {
    for (bool inc : {false, true}) {
      Pool2d p = cases[i];
      p.include_pad = inc;
      OpCase c = make_pool("AveragePool", p);
      auto out = c.run();
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      EXPECT_TRUE(tensors_close((*out)[0], naive_pool(p, "avg", *c.inputs()[0]), 1e-6, 1e-6)) << "case " << i;
      EXPECT_GE(c.expect_all_kernels_match(1e-6, 1e-6), 1);
    }
  }
}

TEST(LpPool, RandomCasesMatchNaive) {
  auto cases = pool_cases();
  for (size_t i = 0; i < cases.size(); ++i) {
    for (int p : {1, 2, 3}) {
      OpCase c = make_pool("LpPool", cases[i]);
      c.attr("p", Attribute::from_int(p));
      auto out = c.run();
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      EXPECT_TRUE(tensors_close((*out)[0], naive_pool(cases[i], "lp", *c.inputs()[0], p), 1e-5, 1e-6)) << i;
      EXPECT_GE(c.expect_all_kernels_match(1e-6, 1e-6), 1);
    }
  }
}

TEST(MaxPool, NaNsAreSkippedUnlessTheWindowHasNothingElse) {
  std::mt19937 rng(3);
  Tensor x = random_tensor(DataType::kFloat32, {1, 1, 4, 4}, rng);
  for (int64_t i : {0, 1, 4, 5, 10}) x.set_from_double(i, std::nan(""));  // window (0,0) is all NaN
  OpCase c("MaxPool", 12);
  c.attr("kernel_shape", Attribute::from_ints({2, 2})).attr("strides", Attribute::from_ints({2, 2}));
  c.input(x);
  auto out = c.run();
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(std::isnan((*out)[0].get_as_double(0)));
  double want = std::max({x.get_as_double(11), x.get_as_double(14), x.get_as_double(15)});
  EXPECT_EQ((*out)[0].get_as_double(3), want);
  EXPECT_GE(c.expect_all_kernels_match(0, 0), 1);
}

TEST(MaxPool, IndicesPointAtTheMaxima) {
  for (int order : {0, 1}) {
    OpCase c("MaxPool", 12);
    c.attr("kernel_shape", Attribute::from_ints({2, 3})).attr("strides", Attribute::from_ints({2, 2}));
    c.attr("pads", Attribute::from_ints({1, 0, 0, 1})).attr("storage_order", Attribute::from_int(order));
    c.input(DataType::kFloat32, {2, 3, 6, 5}).outputs(2);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const Tensor &y = (*out)[0], &ind = (*out)[1];
    const Tensor& x = *c.inputs()[0];
    ASSERT_EQ(ind.dtype(), DataType::kInt64);
    ASSERT_EQ(ind.dims(), y.dims());
    for (int64_t i = 0; i < y.numel(); ++i) {
      int64_t flat = ind.get_as_int64(i);
      int64_t plane = flat / 30, sp = flat % 30;
      // Column-major indices count h fastest: h + w * H.
      int64_t h = order ? sp % 6 : sp / 5, w = order ? sp / 6 : sp % 5;
      ASSERT_EQ(plane, i / y.dim(2) / y.dim(3));
      EXPECT_EQ(x.get_as_double(plane * 30 + h * 5 + w), y.get_as_double(i)) << i;
    }
    EXPECT_GE(c.expect_all_kernels_match(0, 0), 1);
  }
}

TEST(MaxPool, IntegerAndThreeD) {
  OpCase c("MaxPool", 12);
  c.attr("kernel_shape", Attribute::from_ints({3, 3})).attr("pads", Attribute::from_ints({1, 1, 1, 1}));
  c.input(DataType::kUInt8, {1, 2, 4, 4}, 0, 255);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  Pool2d p;
  p.c = 2, p.h = 4, p.w = 4, p.kh = 3, p.kw = 3, p.pads = {1, 1, 1, 1};
  Tensor want = naive_pool(p, "max", *c.inputs()[0]);
  for (int64_t i = 0; i < want.numel(); ++i) EXPECT_EQ((*out)[0].get_as_double(i), want.get_as_double(i));

  // 3-D with a depth-1 kernel on depth 1 equals the 2-D pool.
  OpCase d3("AveragePool", 22);
  d3.attr("kernel_shape", Attribute::from_ints({1, 3, 2})).attr("pads", Attribute::from_ints({0, 1, 0, 0, 1, 1}));
  d3.attr("count_include_pad", Attribute::from_int(1));
  d3.input(DataType::kFloat32, {1, 2, 1, 9, 8});
  auto o3 = d3.run();
  ASSERT_TRUE(o3.ok()) << o3.status().to_string();
  Pool2d q;
  q.pads = {1, 0, 1, 1}, q.include_pad = true;
  Tensor w3 = naive_pool(q, "avg", d3.inputs()[0]->reshaped({1, 2, 9, 8}));
  EXPECT_TRUE(tensors_close((*o3)[0].reshaped(w3.dims()), w3, 1e-6, 1e-6));
}

TEST(AveragePool, AutoPadSame) {
  // SAME_UPPER with kernel 2 on 32: pad (0, 1); compare with explicit pads.
  for (std::string ap : {"SAME_UPPER", "SAME_LOWER"}) {
    OpCase a("AveragePool", 22), b("AveragePool", 22);
    a.attr("kernel_shape", Attribute::from_ints({2, 2})).attr("auto_pad", Attribute::from_string(ap));
    b.attr("kernel_shape", Attribute::from_ints({2, 2}));
    b.attr("pads", Attribute::from_ints(ap == "SAME_UPPER" ? std::vector<int64_t>{0, 0, 1, 1}
                                                           : std::vector<int64_t>{1, 1, 0, 0}));
    a.input(DataType::kFloat32, {1, 2, 7, 6});
    b.input(*a.inputs()[0]);
    auto oa = a.run(), ob = b.run();
    ASSERT_TRUE(oa.ok() && ob.ok());
    EXPECT_EQ((*oa)[0].dims(), (Dims{1, 2, 7, 6}));
    EXPECT_TRUE(tensors_close((*oa)[0], (*ob)[0], 0, 0)) << ap;
  }
}

TEST(Pool, Errors) {
  OpCase nok("MaxPool", 12);
  nok.input(DataType::kFloat32, {1, 1, 4, 4});
  auto e = nok.run();
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("kernel_shape"), std::string::npos);
  OpCase rank("AveragePool", 22);
  rank.attr("kernel_shape", Attribute::from_ints({2}));
  rank.input(DataType::kFloat32, {4, 4});
  EXPECT_FALSE(rank.run().ok());
  OpCase big("MaxPool", 12);
  big.attr("kernel_shape", Attribute::from_ints({5, 5}));
  big.input(DataType::kFloat32, {1, 1, 4, 4});
  EXPECT_FALSE(big.run().ok());
  OpCase kr("MaxPool", 12);
  kr.attr("kernel_shape", Attribute::from_ints({2, 2, 2}));
  kr.input(DataType::kFloat32, {1, 1, 4, 4});
  EXPECT_FALSE(kr.run().ok());
}

TEST(GlobalPool, MatchesNaive) {
  for (std::string op : {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"}) {
    OpCase c(op, 22);
    c.input(DataType::kFloat32, {2, 3, 5, 4});
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_EQ((*out)[0].dims(), (Dims{2, 3, 1, 1}));
    const Tensor& x = *c.inputs()[0];
    for (int64_t pl = 0; pl < 6; ++pl) {
      double s = 0, m = -INFINITY, l = 0;
      for (int64_t i = 0; i < 20; ++i) {
        double v = x.get_as_double(pl * 20 + i);
        s += v, m = std::max(m, v), l += v * v;
      }
      double want = op == "GlobalAveragePool" ? s / 20 : op == "GlobalMaxPool" ? m : std::sqrt(l);
      EXPECT_NEAR((*out)[0].get_as_double(pl), want, 1e-6) << op;
    }
    if (op != "GlobalLpPool") {
      EXPECT_GE(c.expect_all_kernels_match(1e-6, 1e-6), 1);
    }
  }
}

TEST(MaxUnpool, InvertsMaxPoolPositions) {
  OpCase mp("MaxPool", 12);
  mp.attr("kernel_shape", Attribute::from_ints({2, 2})).attr("strides", Attribute::from_ints({2, 2}));
  mp.input(DataType::kFloat32, {1, 2, 4, 6}).outputs(2);
  auto pooled = mp.run();
  ASSERT_TRUE(pooled.ok());
  OpCase un("MaxUnpool", 11);
  un.attr("kernel_shape", Attribute::from_ints({2, 2})).attr("strides", Attribute::from_ints({2, 2}));
  un.input((*pooled)[0]).input((*pooled)[1]);
  auto out = un.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  ASSERT_EQ((*out)[0].dims(), (Dims{1, 2, 4, 6}));
  const Tensor& x = *mp.inputs()[0];
  int nonzero = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    double v = (*out)[0].get_as_double(i);
    if (v != 0) {
      EXPECT_EQ(v, x.get_as_double(i));
      ++nonzero;
    }
  }
  EXPECT_EQ(nonzero, 12);
  // With an explicit, larger output shape.
  OpCase un2("MaxUnpool", 11);
  un2.attr("kernel_shape", Attribute::from_ints({2, 2})).attr("strides", Attribute::from_ints({2, 2}));
  un2.input((*pooled)[0]).input((*pooled)[1]).input(Tensor::from_vector<int64_t>(DataType::kInt64, {4}, {1, 2, 5, 6}));
  auto o2 = un2.run();
  ASSERT_TRUE(o2.ok()) << o2.status().to_string();
  EXPECT_EQ((*o2)[0].dims(), (Dims{1, 2, 5, 6}));
  // The unpooled 4x6 block sits at the top-left of each 5x6 plane; the extra row is zero.
  for (int64_t pl = 0; pl < 2; ++pl)
    for (int64_t i = 0; i < 30; ++i) {
      double want = i < 24 ? (*out)[0].get_as_double(pl * 24 + i) : 0.0;
      EXPECT_EQ((*o2)[0].get_as_double(pl * 30 + i), want);
    }
  // An index outside the output is an error, not a write.
  Tensor bad = (*pooled)[1].clone();
  bad.set_from_double(0, 1000);
  OpCase un3("MaxUnpool", 11);
  un3.attr("kernel_shape", Attribute::from_ints({2, 2})).attr("strides", Attribute::from_ints({2, 2}));
  un3.input((*pooled)[0]).input(bad);
  EXPECT_FALSE(un3.run().ok());
}

// ---- Cases for the CUDA kernels (cuda.pool, cuda.global_pool); without a GPU only the CPU kernels run.

const std::vector<Tol> kFloatTols = {
    {DataType::kFloat32, 1e-5, 1e-5}, {DataType::kFloat16, 1e-2, 1e-2}, {DataType::kBFloat16, 2e-2, 2e-2}};

TEST(Pool, CudaWindowsPadsCeilDilationsAndDtypes) {
  struct P {
    Dims x;
    std::vector<int64_t> kernel, strides, pads, dilations;
    int ceil = 0, include_pad = 0;
    std::string auto_pad;
  };
  std::vector<P> cases = {
      {{1, 3, 7, 5}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {}, 0, 0},
      {{2, 2, 9, 8}, {3, 2}, {2, 3}, {1, 0, 0, 1}, {}, 1, 1},                 // ceil_mode, asymmetric pads
      {{1, 2, 10, 11}, {2, 3}, {1, 2}, {0, 1, 1, 1}, {2, 2}, 1, 0},           // dilations
      {{2, 3, 13}, {4}, {3}, {2, 1}, {}, 0, 1},                               // 1-D
      {{1, 2, 5, 6, 7}, {2, 3, 2}, {2, 1, 2}, {1, 1, 0, 0, 1, 1}, {}, 1, 1},  // 3-D
      {{1, 2, 9, 10}, {3, 4}, {2, 3}, {}, {}, 0, 0, "SAME_LOWER"},
      {{1, 2, 9, 10}, {3, 4}, {2, 3}, {}, {}, 0, 1, "SAME_UPPER"},
      {{1, 1, 40, 50}, {5, 5}, {3, 3}, {2, 2, 2, 2}, {}, 0, 1},
  };
  for (const char* op : {"MaxPool", "AveragePool", "LpPool"})
    for (const Tol& t : kFloatTols)
      for (size_t i = 0; i < cases.size(); ++i) {
        const P& p = cases[i];
        const std::string name = op;
        OpCase c(op, name == "LpPool" ? 18 : 19);
        c.attr("kernel_shape", Attribute::from_ints(p.kernel)).attr("strides", Attribute::from_ints(p.strides));
        if (!p.pads.empty()) c.attr("pads", Attribute::from_ints(p.pads));
        if (!p.auto_pad.empty()) c.attr("auto_pad", Attribute::from_string(p.auto_pad));
        if (!p.dilations.empty()) c.attr("dilations", Attribute::from_ints(p.dilations));
        if (name != "LpPool") c.attr("ceil_mode", Attribute::from_int(p.ceil));
        if (name == "AveragePool") c.attr("count_include_pad", Attribute::from_int(p.include_pad));
        if (name == "LpPool") c.attr("p", Attribute::from_int(i % 2 ? 3 : 2));
        c.input(t.dtype, p.x);
        EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
            << op << " " << dtype_name(t.dtype) << " case " << i;
      }
}

TEST(Pool, CudaMaxPoolWithIndicesStaysOnTheReference) {
  OpCase c("MaxPool", 12);
  c.attr("kernel_shape", Attribute::from_ints({2, 2})).outputs(2);
  c.input(DataType::kFloat16, {1, 2, 5, 5});
  EXPECT_GE(c.expect_all_kernels_match(0, 0), 0);
}

TEST(GlobalPool, CudaOddSizesAndDtypes) {
  for (const char* op : {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
    for (const Tol& t : kFloatTols)
      for (const Dims& x :
           {Dims{2, 3, 5, 4}, Dims{1, 5, 7}, Dims{2, 2, 45, 47}, Dims{1, 3, 2, 3, 33}, Dims{3, 1, 1, 1}}) {
        OpCase c(op, 22);
        c.input(t.dtype, x);
        EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
            << op << " " << dtype_name(t.dtype) << " " << dims_to_string(x);
      }
}

// ---- NHWC cases (kiln.nhwc = 1: X is [N, H, W, C]). C % 8 == 0 (fp16/bf16) or C % 4 == 0
// (fp32) takes the vectorized CUDA kernel, other channel counts the scalar NHWC kernel.

struct NhwcPool {
  Dims x;  // [N, H, W, C]
  std::vector<int64_t> kernel, strides, pads, dilations;
  int ceil = 0;
  std::string auto_pad;
};

OpCase make_nhwc_pool(const std::string& op, const NhwcPool& p, DataType dt, int include_pad) {
  OpCase c(op, 19);
  c.attr("kernel_shape", Attribute::from_ints(p.kernel)).attr("strides", Attribute::from_ints(p.strides));
  if (!p.pads.empty()) c.attr("pads", Attribute::from_ints(p.pads));
  if (!p.auto_pad.empty()) c.attr("auto_pad", Attribute::from_string(p.auto_pad));
  if (!p.dilations.empty()) c.attr("dilations", Attribute::from_ints(p.dilations));
  c.attr("ceil_mode", Attribute::from_int(p.ceil));
  if (op == "AveragePool") c.attr("count_include_pad", Attribute::from_int(include_pad));
  c.attr("kiln.nhwc", Attribute::from_int(1));
  c.input(dt, p.x, -3, 3);
  return c;
}

TEST(Pool, CudaNhwcVectorizedChannelsAndFallback) {
  std::vector<NhwcPool> geoms = {
      {{2, 9, 7, 0}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {}, 0},        // ResNet stem pool, odd sizes
      {{1, 7, 9, 0}, {5, 5}, {1, 1}, {2, 2, 2, 2}, {}, 0},        // YOLO SPPF
      {{1, 10, 11, 0}, {3, 2}, {2, 3}, {1, 0, 0, 1}, {}, 1},      // ceil_mode, asymmetric pads
      {{2, 11, 10, 0}, {2, 3}, {1, 2}, {0, 1, 1, 1}, {2, 2}, 1},  // dilations
      {{1, 9, 10, 0}, {3, 4}, {2, 3}, {}, {}, 0, "SAME_UPPER"},   // auto_pad
      {{1, 5, 5, 0}, {3, 3}, {3, 3}, {1, 1, 1, 1}, {}, 1},        // ceil_mode with pads
      {{1, 6, 7, 0}, {3, 3}, {2, 2}, {0, 0, 0, 0}, {}, 1},        // ceil window past the input
      {{1, 5, 112, 0}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {}, 0},      // a row of 112: the row kernel loops
      {{1, 3, 520, 0}, {2, 3}, {1, 2}, {0, 1, 0, 1}, {}, 0},      // rows past its 48 KB (C = 64 fp32)
  };
  for (const char* op : {"MaxPool", "AveragePool"})
    for (const Tol& t : kFloatTols)
      for (int64_t ch : {8, 16, 64, 3, 4, 12})
        for (size_t i = 0; i < geoms.size(); ++i)
          for (int include_pad : {0, 1}) {
            if (std::string(op) == "MaxPool" && include_pad) continue;
            NhwcPool g = geoms[i];
            g.x[3] = ch;
            OpCase c = make_nhwc_pool(op, g, t.dtype, include_pad);
            EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
                << op << " " << dtype_name(t.dtype) << " C=" << ch << " case " << i << " pad " << include_pad;
          }
}

TEST(Pool, CudaNhwcMaxPoolNaNAndInfinity) {
  // [1, 4, 4, 8]: per channel, window (0,0) of a 2x2/2 pool is all NaN in channel 0,
  // all -inf in channel 1, NaN and -inf in channel 2, NaN next to values elsewhere.
  for (const Tol& t : kFloatTols) {
    std::mt19937 rng(5);
    Tensor x = random_tensor(t.dtype, {1, 4, 4, 8}, rng, -2, 2);
    auto at = [](int64_t h, int64_t w, int64_t c) { return (h * 4 + w) * 8 + c; };
    for (int64_t h : {0, 1})
      for (int64_t w : {0, 1}) {
        x.set_from_double(at(h, w, 0), std::nan(""));
        x.set_from_double(at(h, w, 1), -INFINITY);
        x.set_from_double(at(h, w, 2), (h + w) % 2 ? -INFINITY : std::nan(""));
      }
    x.set_from_double(at(2, 2, 5), std::nan(""));
    x.set_from_double(at(3, 3, 6), INFINITY);
    x.set_from_double(at(0, 3, 7), std::nan(""));
    for (auto pads : {std::vector<int64_t>{0, 0, 0, 0}, std::vector<int64_t>{1, 1, 1, 1}}) {
      OpCase c("MaxPool", 12);
      c.attr("kernel_shape", Attribute::from_ints({2, 2})).attr("strides", Attribute::from_ints({2, 2}));
      c.attr("pads", Attribute::from_ints(pads)).attr("kiln.nhwc", Attribute::from_int(1));
      c.input(x);
      auto out = c.run();
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      if (pads[0] == 0) {
        EXPECT_TRUE(std::isnan((*out)[0].get_as_double(0)));
        EXPECT_EQ((*out)[0].get_as_double(1), -INFINITY);
        EXPECT_EQ((*out)[0].get_as_double(2), -INFINITY);
      }
      EXPECT_GE(c.expect_all_kernels_match(0, 0), gpu_kernels()) << dtype_name(t.dtype);
    }
  }
}

TEST(GlobalPool, CudaNhwcAndWarpPlanes) {
  for (const char* op : {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
    for (const Tol& t : kFloatTols) {
      // NHWC [N, H, W, C]: vectorized (C % 8 / C % 4), scalar otherwise; many pixels.
      for (const Dims& x : {Dims{2, 7, 7, 16}, Dims{1, 3, 5, 64}, Dims{2, 5, 4, 3}, Dims{1, 7, 7, 12}, Dims{2, 1, 1, 8},
                            Dims{1, 33, 35, 40}}) {
        OpCase c(op, 22);
        c.attr("kiln.nhwc", Attribute::from_int(1));
        c.input(t.dtype, x);
        EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
            << op << " NHWC " << dtype_name(t.dtype) << " " << dims_to_string(x);
      }
      // NCHW: planes not a multiple of the 8 warps of a block, the warp / block threshold.
      for (const Dims& x : {Dims{3, 37, 7, 7}, Dims{1, 4, 64, 32}, Dims{1, 3, 64, 33}, Dims{2, 9, 1, 1}}) {
        OpCase c(op, 22);
        c.input(t.dtype, x);
        EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
            << op << " " << dtype_name(t.dtype) << " " << dims_to_string(x);
      }
    }
}

TEST(GlobalPool, CudaMaxPropagatesNaN) {
  for (bool nhwc : {false, true}) {
    std::mt19937 rng(7);
    Tensor x = random_tensor(DataType::kFloat16, {2, 8, 5, 5}, rng);
    x.set_from_double(3, std::nan(""));
    x.set_from_double(77, -INFINITY);
    x.set_from_double(130, std::nan(""));
    OpCase c("GlobalMaxPool", 22);
    if (nhwc) c.attr("kiln.nhwc", Attribute::from_int(1));
    c.input(x);
    EXPECT_GE(c.expect_all_kernels_match(0, 0), gpu_kernels()) << nhwc;
  }
}

// NHWC average and max at ResNet-50's head ([N, 7, 7, 2048]: 16-byte loads, 4 pixel slices
// at N = 3), an odd channel count (element loads), a channel-group count that is no power of
// two, and few channels over many pixels (many slices); Lp keeps its own kernel.
TEST(GlobalPool, CudaNhwcResNetHeadAndOddChannels) {
  for (const char* op : {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
    for (const Tol& t : kFloatTols)
      for (const Dims& x : {Dims{3, 7, 7, 2048}, Dims{3, 7, 7, 1001}, Dims{2, 7, 7, 2040}, Dims{1, 64, 60, 24}}) {
        OpCase c(op, 22);
        c.attr("kiln.nhwc", Attribute::from_int(1));
        c.input(t.dtype, x);
        EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
            << op << " NHWC " << dtype_name(t.dtype) << " " << dims_to_string(x);
      }
}

}  // namespace
}  // namespace kiln::test

#include <cmath>

#include <algorithm>
#include <random>

#include "backends/cuda/device.h"
#include "backends/cuda/node_runner.h"
#include "harness/op_harness.h"
#include "ops/conv/conv_graph_cuda.h"

namespace kiln::test {
namespace {

using ir::Attribute;

struct Conv2d {
  int64_t n = 1, c = 3, h = 9, w = 8, m = 4, kh = 3, kw = 3, group = 1;
  std::vector<int64_t> strides{1, 1}, dilations{1, 1}, pads{0, 0, 0, 0};
};

// Direct 2-D convolution in double, written independently of the kernels.
Tensor naive_conv2d(const Conv2d& p, const Tensor& x, const Tensor& w, const Tensor* b) {
  const int64_t ekh = (p.kh - 1) * p.dilations[0] + 1, ekw = (p.kw - 1) * p.dilations[1] + 1;
  const int64_t oh = (p.h + p.pads[0] + p.pads[2] - ekh) / p.strides[0] + 1;
  const int64_t ow = (p.w + p.pads[1] + p.pads[3] - ekw) / p.strides[1] + 1;
  const int64_t cg = p.c / p.group, mg = p.m / p.group;
  Tensor y = Tensor::zeros(DataType::kFloat32, {p.n, p.m, oh, ow});
  for (int64_t n = 0; n < p.n; ++n)
    for (int64_t m = 0; m < p.m; ++m)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double s = b ? b->get_as_double(m) : 0;
          for (int64_t c = 0; c < cg; ++c)
            for (int64_t a = 0; a < p.kh; ++a)
              for (int64_t e = 0; e < p.kw; ++e) {
                int64_t ih = i * p.strides[0] - p.pads[0] + a * p.dilations[0];
                int64_t iw = j * p.strides[1] - p.pads[1] + e * p.dilations[1];
                if (ih < 0 || ih >= p.h || iw < 0 || iw >= p.w) continue;
                int64_t ci = (m / mg) * cg + c;
                s += x.get_as_double(((n * p.c + ci) * p.h + ih) * p.w + iw) *
                     w.get_as_double(((m * cg + c) * p.kh + a) * p.kw + e);
              }
          y.set_from_double(((n * p.m + m) * oh + i) * ow + j, s);
        }
  return y;
}

OpCase make_conv(const Conv2d& p, bool bias, unsigned seed = 1) {
  OpCase c("Conv", 22);
  c.seed(seed);
  c.attr("strides", Attribute::from_ints(p.strides)).attr("dilations", Attribute::from_ints(p.dilations));
  c.attr("pads", Attribute::from_ints(p.pads)).attr("group", Attribute::from_int(p.group));
  c.input(DataType::kFloat32, {p.n, p.c, p.h, p.w}).input(DataType::kFloat32, {p.m, p.c / p.group, p.kh, p.kw});
  if (bias) c.input(DataType::kFloat32, {p.m});
  return c;
}

TEST(Conv, BasicWithPaddingHandChecked) {
  std::vector<float> xs(25);
  for (int i = 0; i < 25; ++i) xs[i] = static_cast<float>(i);
  OpCase c("Conv", 11);
  c.attr("kernel_shape", Attribute::from_ints({3, 3})).attr("pads", Attribute::from_ints({1, 1, 1, 1}));
  c.input(Tensor::from_vector<float>(DataType::kFloat32, {1, 1, 5, 5}, xs));
  c.input(Tensor::from_vector<float>(DataType::kFloat32, {1, 1, 3, 3}, std::vector<float>(9, 1.f)));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  std::vector<float> want = {12,  21, 27, 33,  24,  33,  54,  63, 72,  51,  63,  99, 108,
                             117, 81, 93, 144, 153, 162, 111, 72, 111, 117, 123, 84};
  EXPECT_TRUE(tensors_close((*out)[0], Tensor::from_vector<float>(DataType::kFloat32, {1, 1, 5, 5}, want), 0, 0));
  EXPECT_GE(c.expect_all_kernels_match(1e-6, 1e-5), 1);
}

TEST(Conv, RandomCasesMatchNaiveAndFastKernels) {
  std::vector<Conv2d> cases;
  cases.push_back({});
  {
    Conv2d p;
    p.strides = {2, 2};
    p.pads = {1, 0, 1, 2};
    cases.push_back(p);
  }
  {
    Conv2d p;
    p.c = 6, p.m = 4, p.group = 2, p.dilations = {2, 1}, p.pads = {2, 1, 2, 1};
    cases.push_back(p);
  }
  {
    Conv2d p;  // depthwise
    p.c = 5, p.m = 5, p.group = 5, p.h = 11, p.w = 13, p.pads = {1, 1, 1, 1}, p.strides = {2, 1};
    cases.push_back(p);
  }
  {
    Conv2d p;  // depthwise with multiplier 2
    p.c = 3, p.m = 6, p.group = 3, p.pads = {1, 1, 1, 1};
    cases.push_back(p);
  }
  {
    Conv2d p;  // pointwise, batch 2
    p.n = 2, p.c = 17, p.m = 33, p.kh = 1, p.kw = 1, p.h = 7, p.w = 5;
    cases.push_back(p);
  }
  {
    Conv2d p;  // bigger, odd sizes
    p.c = 19, p.m = 37, p.h = 23, p.w = 29, p.kh = 5, p.kw = 3, p.pads = {2, 1, 2, 1}, p.strides = {1, 2};
    cases.push_back(p);
  }
  {
    Conv2d p;  // stem-like
    p.c = 3, p.m = 16, p.h = 32, p.w = 32, p.kh = 7, p.kw = 7, p.strides = {2, 2}, p.pads = {3, 3, 3, 3};
    cases.push_back(p);
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    for (bool bias : {false, true}) {
      OpCase c = make_conv(cases[i], bias, static_cast<unsigned>(i + 1));
      auto out = c.run();
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      Tensor want = naive_conv2d(cases[i], *c.inputs()[0], *c.inputs()[1], bias ? &*c.inputs()[2] : nullptr);
      EXPECT_TRUE(tensors_close((*out)[0], want, 1e-5, 1e-5)) << "case " << i;
      EXPECT_GE(c.expect_all_kernels_match(1e-4, 1e-4), 1) << "case " << i;
    }
  }
}

TEST(Conv, OneAndThreeDimsAgreeWithTwoD) {
  // A 1-D conv is the 2-D conv with H = 1; a 3-D conv with depth 1 and a 1-deep kernel likewise.
  Conv2d p;
  p.h = 1, p.kh = 1, p.w = 17, p.kw = 4, p.strides = {1, 3}, p.dilations = {1, 2}, p.pads = {0, 2, 0, 1};
  OpCase c1("Conv", 22);
  c1.attr("strides", Attribute::from_ints({3})).attr("dilations", Attribute::from_ints({2}));
  c1.attr("pads", Attribute::from_ints({2, 1}));
  c1.input(DataType::kFloat32, {1, 3, 17}).input(DataType::kFloat32, {4, 3, 4}).input(DataType::kFloat32, {4});
  auto o1 = c1.run();
  ASSERT_TRUE(o1.ok()) << o1.status().to_string();
  Tensor x = c1.inputs()[0]->reshaped({1, 3, 1, 17}), w = c1.inputs()[1]->reshaped({4, 3, 1, 4});
  Tensor want = naive_conv2d(p, x, w, &*c1.inputs()[2]);
  EXPECT_TRUE(tensors_close((*o1)[0], want.reshaped({1, 4, want.dim(3)}), 1e-5, 1e-5));
  EXPECT_GE(c1.expect_all_kernels_match(1e-5, 1e-5), 1);

  Conv2d q;
  q.c = 4, q.m = 6, q.h = 6, q.w = 7, q.group = 2, q.pads = {1, 1, 1, 1};
  OpCase c3("Conv", 22);
  c3.attr("group", Attribute::from_int(2)).attr("pads", Attribute::from_ints({0, 1, 1, 0, 1, 1}));
  c3.input(DataType::kFloat32, {1, 4, 1, 6, 7}).input(DataType::kFloat32, {6, 2, 1, 3, 3});
  auto o3 = c3.run();
  ASSERT_TRUE(o3.ok()) << o3.status().to_string();
  Tensor want3 =
      naive_conv2d(q, c3.inputs()[0]->reshaped({1, 4, 6, 7}), c3.inputs()[1]->reshaped({6, 2, 3, 3}), nullptr);
  EXPECT_TRUE(tensors_close((*o3)[0], want3.reshaped({1, 6, 1, 6, 7}), 1e-5, 1e-5));
  EXPECT_GE(c3.expect_all_kernels_match(1e-5, 1e-5), 1);
}

TEST(Conv, ThreeDFastKernelsMatchRef) {
  OpCase c("Conv", 22);
  c.attr("strides", Attribute::from_ints({1, 2, 1})).attr("pads", Attribute::from_ints({1, 0, 1, 1, 1, 0}));
  c.attr("dilations", Attribute::from_ints({2, 1, 1}));
  c.input(DataType::kFloat32, {2, 3, 7, 8, 6})
      .input(DataType::kFloat32, {5, 3, 2, 3, 3})
      .input(DataType::kFloat32, {5});
  EXPECT_GE(c.expect_all_kernels_match(1e-4, 1e-4), 1);
}

TEST(Conv, AutoPadShapes) {
  struct A {
    const char* pad;
    int64_t stride;
    Dims out;
  };
  for (const A& a : std::vector<A>{{"SAME_UPPER", 2, {1, 2, 4, 3}},
                                   {"SAME_LOWER", 2, {1, 2, 4, 3}},
                                   {"VALID", 2, {1, 2, 3, 2}},
                                   {"SAME_UPPER", 1, {1, 2, 7, 6}}}) {
    OpCase c("Conv", 22);
    c.attr("auto_pad", Attribute::from_string(a.pad)).attr("strides", Attribute::from_ints({a.stride, a.stride}));
    c.input(DataType::kFloat32, {1, 3, 7, 6}).input(DataType::kFloat32, {2, 3, 3, 3});
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_EQ((*out)[0].dims(), a.out) << a.pad;
    EXPECT_GE(c.expect_all_kernels_match(1e-5, 1e-5), 1) << a.pad;
  }
  // SAME_LOWER puts the extra padding first: compare with explicit pads.
  OpCase lower("Conv", 22), explicit_pads("Conv", 22);
  lower.attr("auto_pad", Attribute::from_string("SAME_LOWER")).attr("strides", Attribute::from_ints({2, 2}));
  explicit_pads.attr("pads", Attribute::from_ints({1, 1, 1, 1})).attr("strides", Attribute::from_ints({2, 2}));
  for (OpCase* c : {&lower, &explicit_pads})
    c->input(DataType::kFloat32, {1, 1, 6, 6}).input(DataType::kFloat32, {1, 1, 3, 3});
  auto lo = lower.run(), ex = explicit_pads.run();
  ASSERT_TRUE(lo.ok() && ex.ok());
  // total pad 1 per dim: SAME_LOWER = (1, 0), so it differs from (1, 1) only in shape, not the first window.
  EXPECT_EQ((*lo)[0].dims(), (Dims{1, 1, 3, 3}));
  EXPECT_EQ((*lo)[0].get_as_double(0), (*ex)[0].get_as_double(0));
}

TEST(Conv, OtherFloatDtypes) {
  for (DataType t : {DataType::kFloat64, DataType::kFloat16}) {
    OpCase c("Conv", 22);
    c.attr("pads", Attribute::from_ints({1, 1, 1, 1}));
    c.input(t, {1, 2, 5, 5}).input(t, {3, 2, 3, 3});
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    Conv2d p;
    p.c = 2, p.m = 3, p.h = 5, p.w = 5, p.pads = {1, 1, 1, 1};
    Tensor want = naive_conv2d(p, *c.inputs()[0], *c.inputs()[1], nullptr);
    for (int64_t i = 0; i < want.numel(); ++i)
      EXPECT_NEAR((*out)[0].get_as_double(i), want.get_as_double(i), t == DataType::kFloat16 ? 1e-2 : 1e-6);
  }
}

TEST(Conv, ErrorsAreClear) {
  OpCase ch("Conv", 22);
  ch.input(DataType::kFloat32, {1, 3, 5, 5}).input(DataType::kFloat32, {2, 4, 3, 3});
  auto e1 = ch.run();
  ASSERT_FALSE(e1.ok());
  EXPECT_NE(e1.status().message().find("channels"), std::string::npos) << e1.status().message();
  OpCase rank("Conv", 22);
  rank.input(DataType::kFloat32, {1, 3, 5, 5}).input(DataType::kFloat32, {2, 3, 3});
  EXPECT_FALSE(rank.run().ok());
  OpCase big("Conv", 22);
  big.input(DataType::kFloat32, {1, 1, 2, 2}).input(DataType::kFloat32, {1, 1, 3, 3});
  EXPECT_FALSE(big.run().ok());
  OpCase ks("Conv", 22);
  ks.attr("kernel_shape", Attribute::from_ints({3}));
  ks.input(DataType::kFloat32, {1, 1, 5, 5}).input(DataType::kFloat32, {1, 1, 3, 3});
  EXPECT_FALSE(ks.run().ok());
  OpCase st("Conv", 22);
  st.attr("strides", Attribute::from_ints({0, 1}));
  st.input(DataType::kFloat32, {1, 1, 5, 5}).input(DataType::kFloat32, {1, 1, 3, 3});
  EXPECT_FALSE(st.run().ok());
  OpCase bias("Conv", 22);
  bias.input(DataType::kFloat32, {1, 1, 5, 5}).input(DataType::kFloat32, {2, 1, 3, 3}).input(DataType::kFloat32, {3});
  EXPECT_FALSE(bias.run().ok());
  OpCase grp("Conv", 22);
  grp.attr("group", Attribute::from_int(2));
  grp.input(DataType::kFloat32, {1, 4, 5, 5}).input(DataType::kFloat32, {3, 2, 3, 3});
  EXPECT_FALSE(grp.run().ok());
}

TEST(Conv, ConstantWeightsGiveTheSameResultOnEveryRun) {
  // Fast kernels may cache prepared weights for initializers; a run with new
  // initializer contents must not see the old ones.
  const ops::OpDef* def = ops::OpRegistry::global().find("", "Conv");
  ASSERT_NE(def, nullptr);
  Conv2d p;
  p.c = 8, p.m = 16, p.h = 10, p.w = 9, p.pads = {1, 1, 1, 1};
  for (const ops::FastKernel& k : def->fast) {
    OpCase c = make_conv(p, true, 5);
    auto want = c.run();
    ASSERT_TRUE(want.ok());
    ir::Node& node = c.node();
    std::mt19937 rng(8);
    for (int round = 0; round < 3; ++round) {
      // Round 2 swaps in a new initializer with other weights.
      Tensor w = round < 2 ? *c.inputs()[1] : random_tensor(DataType::kFloat32, c.inputs()[1]->dims(), rng);
      if (round != 1) node.inputs[1]->initializer = std::make_shared<Tensor>(w.clone());
      std::vector<const Tensor*> ins{&*c.inputs()[0], node.inputs[1]->initializer.get(), &*c.inputs()[2]};
      std::vector<Tensor> outs, ref_outs;
      node.kernel = k.name;
      ASSERT_TRUE(ops::run_node(node, ins, outs).ok()) << k.name;
      node.kernel = "ref";
      ASSERT_TRUE(ops::run_node(node, ins, ref_outs).ok());
      EXPECT_TRUE(tensors_close(outs[0], ref_outs[0], 1e-4, 1e-4)) << k.name << " round " << round;
      if (round < 2) {
        EXPECT_TRUE(tensors_close(outs[0], (*want)[0], 1e-4, 1e-4)) << k.name;
      }
    }
    node.kernel.clear();
    node.inputs[1]->initializer.reset();
  }
}

TEST(Conv, EmptyBatch) {
  OpCase c("Conv", 22);
  c.input(DataType::kFloat32, {0, 2, 5, 5}).input(DataType::kFloat32, {3, 2, 3, 3});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ((*out)[0].dims(), (Dims{0, 3, 3, 3}));
  EXPECT_GE(c.expect_all_kernels_match(0, 0), 1);
}

// ---------------------------------------------------------------- ConvTranspose

TEST(ConvTranspose, HandChecked) {
  std::vector<float> xs(9);
  for (int i = 0; i < 9; ++i) xs[i] = static_cast<float>(i);
  OpCase c("ConvTranspose", 22);
  c.input(Tensor::from_vector<float>(DataType::kFloat32, {1, 1, 3, 3}, xs));
  c.input(Tensor::from_vector<float>(DataType::kFloat32, {1, 2, 3, 3}, std::vector<float>(18, 1.f)));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  std::vector<float> plane = {0, 1, 3, 3, 2, 3, 8, 15, 12, 7, 9, 21, 36, 27, 15, 9, 20, 33, 24, 13, 6, 13, 21, 15, 8};
  std::vector<float> want = plane;
  want.insert(want.end(), plane.begin(), plane.end());
  EXPECT_TRUE(tensors_close((*out)[0], Tensor::from_vector<float>(DataType::kFloat32, {1, 2, 5, 5}, want), 0, 0));
  EXPECT_GE(c.expect_all_kernels_match(1e-6, 1e-5), 1);
}

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += a.get_as_double(i) * b.get_as_double(i);
  return s;
}

TEST(ConvTranspose, IsTheAdjointOfConv) {
  // <Conv(x), y> == <x, ConvTranspose(y)> for the same weights, strides, pads, dilations, groups.
  struct P {
    int64_t c, m, h, w, k, stride, dil, pad, group;
  };
  for (const P& p : std::vector<P>{{2, 3, 7, 8, 3, 2, 1, 1, 1},
                                   {4, 6, 9, 9, 3, 1, 2, 2, 2},
                                   {3, 3, 10, 7, 2, 3, 1, 0, 3},
                                   {5, 4, 6, 6, 1, 2, 1, 0, 1}}) {
    OpCase conv("Conv", 22);
    conv.attr("strides", Attribute::from_ints({p.stride, p.stride}))
        .attr("dilations", Attribute::from_ints({p.dil, p.dil}));
    conv.attr("pads", Attribute::from_ints({p.pad, p.pad, p.pad, p.pad})).attr("group", Attribute::from_int(p.group));
    conv.input(DataType::kFloat32, {2, p.c, p.h, p.w}).input(DataType::kFloat32, {p.m, p.c / p.group, p.k, p.k});
    auto y = conv.run();
    ASSERT_TRUE(y.ok()) << y.status().to_string();
    const Dims yd = (*y)[0].dims();
    const int64_t ext = (p.k - 1) * p.dil + 1;
    const int64_t oph = p.h - (p.stride * (yd[2] - 1) + ext - 2 * p.pad);
    const int64_t opw = p.w - (p.stride * (yd[3] - 1) + ext - 2 * p.pad);
    std::mt19937 rng(99);
    Tensor ybar = random_tensor(DataType::kFloat32, yd, rng);
    OpCase ct("ConvTranspose", 22);
    ct.attr("strides", Attribute::from_ints({p.stride, p.stride}))
        .attr("dilations", Attribute::from_ints({p.dil, p.dil}));
    ct.attr("pads", Attribute::from_ints({p.pad, p.pad, p.pad, p.pad})).attr("group", Attribute::from_int(p.group));
    ct.attr("output_padding", Attribute::from_ints({oph, opw}));
    ct.input(ybar).input(*conv.inputs()[1]);
    auto xbar = ct.run();
    ASSERT_TRUE(xbar.ok()) << xbar.status().to_string();
    ASSERT_EQ((*xbar)[0].dims(), conv.inputs()[0]->dims());
    double lhs = dot((*y)[0], ybar), rhs = dot(*conv.inputs()[0], (*xbar)[0]);
    EXPECT_NEAR(lhs, rhs, 1e-4 * (1 + std::fabs(lhs)));
    EXPECT_GE(ct.expect_all_kernels_match(1e-4, 1e-4), 1);
  }
}

TEST(ConvTranspose, OutputShapeAndAutoPad) {
  OpCase c("ConvTranspose", 22);
  c.attr("strides", Attribute::from_ints({3, 2})).attr("output_shape", Attribute::from_ints({10, 8}));
  c.input(DataType::kFloat32, {1, 1, 3, 3}).input(DataType::kFloat32, {1, 2, 3, 3});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ((*out)[0].dims(), (Dims{1, 2, 10, 8}));
  EXPECT_GE(c.expect_all_kernels_match(1e-5, 1e-5), 1);

  OpCase s("ConvTranspose", 22);
  s.attr("strides", Attribute::from_ints({2, 2})).attr("auto_pad", Attribute::from_string("SAME_UPPER"));
  s.input(DataType::kFloat32, {1, 1, 3, 3}).input(DataType::kFloat32, {1, 2, 3, 3}).input(DataType::kFloat32, {2});
  auto so = s.run();
  ASSERT_TRUE(so.ok()) << so.status().to_string();
  EXPECT_EQ((*so)[0].dims(), (Dims{1, 2, 6, 6}));
  EXPECT_GE(s.expect_all_kernels_match(1e-5, 1e-5), 1);

  OpCase d3("ConvTranspose", 22);
  d3.attr("strides", Attribute::from_ints({2, 1, 2})).attr("pads", Attribute::from_ints({1, 0, 0, 0, 1, 1}));
  d3.attr("group", Attribute::from_int(2));
  d3.input(DataType::kFloat32, {2, 4, 3, 4, 3}).input(DataType::kFloat32, {4, 3, 3, 2, 3});
  EXPECT_GE(d3.expect_all_kernels_match(1e-4, 1e-4), 1);
}

TEST(ConvTranspose, Errors) {
  OpCase c("ConvTranspose", 22);
  c.input(DataType::kFloat32, {1, 2, 3, 3}).input(DataType::kFloat32, {3, 2, 3, 3});
  EXPECT_FALSE(c.run().ok());
  OpCase op("ConvTranspose", 22);
  op.attr("output_shape", Attribute::from_ints({10}));
  op.input(DataType::kFloat32, {1, 1, 3, 3}).input(DataType::kFloat32, {1, 1, 3, 3});
  EXPECT_FALSE(op.run().ok());
}

// ---------------------------------------------------------------- ConvInteger

TEST(ConvInteger, MatchesFloatConvOfShiftedValues) {
  OpCase c("ConvInteger", 10);
  c.attr("pads", Attribute::from_ints({1, 1, 1, 1}));
  c.input(DataType::kUInt8, {1, 2, 5, 4}, 0, 255).input(DataType::kUInt8, {3, 2, 2, 2}, 0, 255);
  c.input(Tensor::from_vector<int>(DataType::kUInt8, {}, {7}));
  c.input(Tensor::from_vector<int>(DataType::kUInt8, {3}, {1, 2, 3}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ((*out)[0].dtype(), DataType::kInt32);
  Tensor xf = Tensor::empty(DataType::kFloat32, c.inputs()[0]->dims());
  Tensor wf = Tensor::empty(DataType::kFloat32, c.inputs()[1]->dims());
  for (int64_t i = 0; i < xf.numel(); ++i) xf.set_from_double(i, c.inputs()[0]->get_as_double(i) - 7);
  for (int64_t i = 0; i < wf.numel(); ++i) wf.set_from_double(i, c.inputs()[1]->get_as_double(i) - (1 + i / 8));
  Conv2d p;
  p.c = 2, p.m = 3, p.h = 5, p.w = 4, p.kh = 2, p.kw = 2, p.pads = {1, 1, 1, 1};
  // Padding contributes zero after subtracting the zero point, so pad the shifted input with 0.
  Tensor want = naive_conv2d(p, xf, wf, nullptr);
  ASSERT_EQ((*out)[0].dims(), want.dims());
  for (int64_t i = 0; i < want.numel(); ++i) EXPECT_EQ((*out)[0].get_as_double(i), want.get_as_double(i)) << i;
}

TEST(ConvInteger, OnnxExample) {
  OpCase c("ConvInteger", 10);
  c.input(Tensor::from_vector<int>(DataType::kUInt8, {1, 1, 3, 3}, {2, 3, 4, 5, 6, 7, 8, 9, 10}));
  c.input(Tensor::from_vector<int>(DataType::kUInt8, {1, 1, 2, 2}, {1, 1, 1, 1}));
  c.input(Tensor::from_vector<int>(DataType::kUInt8, {}, {1}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(
      tensors_close((*out)[0], Tensor::from_vector<int>(DataType::kInt32, {1, 1, 2, 2}, {12, 16, 24, 28}), 0, 0));
}

// ---- Cases for the CUDA kernels (cuda.cudnn); on a machine without a GPU only the CPU kernels run.

const std::vector<Tol>& kFloatTols = kGpuFloatTols;

struct ConvCase {
  Dims x, w;
  std::vector<int64_t> strides, dilations, pads;
  int64_t group = 1;
  bool bias = true;
  std::string auto_pad;
};

OpCase make_conv_case(const std::string& op, const ConvCase& k, DataType t) {
  OpCase c(op, 22);
  if (!k.strides.empty()) c.attr("strides", Attribute::from_ints(k.strides));
  if (!k.dilations.empty()) c.attr("dilations", Attribute::from_ints(k.dilations));
  if (!k.pads.empty()) c.attr("pads", Attribute::from_ints(k.pads));
  if (!k.auto_pad.empty()) c.attr("auto_pad", Attribute::from_string(k.auto_pad));
  c.attr("group", Attribute::from_int(k.group));
  c.input(t, k.x).input(t, k.w);
  if (k.bias) c.input(t, {op == "Conv" ? k.w[0] : k.w[1] * k.group});
  return c;
}

TEST(Conv, CudaGroupsStridesDilationsPadsAndDtypes) {
  std::vector<ConvCase> cases = {
      {{1, 3, 7, 5}, {4, 3, 3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},
      {{2, 4, 9, 11}, {6, 2, 3, 2}, {2, 1}, {1, 2}, {1, 0, 1, 0}, 2},
      {{1, 6, 8, 8}, {6, 1, 3, 3}, {2, 2}, {2, 2}, {2, 2, 2, 2}, 6, false},          // depthwise
      {{2, 3, 13}, {5, 3, 4}, {2}, {1}, {1, 1}},                                     // 1-D
      {{1, 2, 5, 6, 7}, {4, 2, 3, 2, 3}, {1, 2, 1}, {1, 1, 2}, {1, 0, 1, 1, 0, 1}},  // 3-D
      {{1, 3, 7, 7}, {2, 3, 3, 3}, {2, 2}, {1, 1}, {1, 1, 2, 2}},  // asymmetric, same windows as symmetric
      {{1, 2, 9, 9}, {3, 2, 4, 4}, {2, 2}, {}, {}, 1, true, "SAME_LOWER"},
      {{1, 2, 9, 9}, {3, 2, 3, 3}, {1, 1}, {}, {}, 1, true, "SAME_UPPER"},
      {{2, 5, 17, 19}, {7, 5, 1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}},  // 1x1
  };
  for (const Tol& t : kFloatTols)
    for (size_t i = 0; i < cases.size(); ++i) {
      OpCase c = make_conv_case("Conv", cases[i], t.dtype);
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels()) << dtype_name(t.dtype) << " case " << i;
    }
}

TEST(Conv, CudaDeclinesPaddingCudnnCannotExpress) {
  // SAME_UPPER with stride 2 on an even size pads only at the end: not expressible symmetrically.
  ConvCase k{{1, 2, 8, 8}, {3, 2, 3, 3}, {2, 2}, {}, {}, 1, true, "SAME_UPPER"};
  OpCase c = make_conv_case("Conv", k, DataType::kFloat16);
  EXPECT_GE(c.expect_all_kernels_match(1e-2, 1e-2), 0);
}

TEST(ConvTranspose, CudaStridesPadsOutputPaddingAndDtypes) {
  struct T {
    ConvCase k;
    std::vector<int64_t> output_padding, output_shape;
  };
  std::vector<T> cases = {
      {{{1, 3, 5, 4}, {3, 2, 3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}}, {1, 0}, {}},
      {{{2, 4, 3, 5}, {4, 3, 3, 2}, {1, 2}, {2, 1}, {0, 1, 0, 1}, 2}, {}, {}},
      {{{1, 2, 6}, {2, 3, 4}, {3}, {1}, {1, 1}, 1, false}, {2}, {}},  // 1-D
      {{{1, 2, 3, 3}, {2, 2, 3, 3}, {3, 2}, {}, {}, 1, true}, {}, {10, 8}},
      {{{1, 1, 3, 3}, {1, 2, 3, 3}, {2, 2}, {}, {}, 1, true, "SAME_LOWER"}, {}, {}},
      {{{1, 4, 3, 4, 3}, {4, 3, 3, 2, 3}, {2, 1, 2}, {}, {1, 0, 1, 1, 0, 1}, 2}, {}, {}},  // 3-D
  };
  for (const Tol& t : kFloatTols)
    for (size_t i = 0; i < cases.size(); ++i) {
      OpCase c = make_conv_case("ConvTranspose", cases[i].k, t.dtype);
      if (!cases[i].output_padding.empty()) c.attr("output_padding", Attribute::from_ints(cases[i].output_padding));
      if (!cases[i].output_shape.empty()) c.attr("output_shape", Attribute::from_ints(cases[i].output_shape));
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels()) << dtype_name(t.dtype) << " case " << i;
    }
}

// ---- FusedConv's CUDA epilogue act(y + B + Z) (and Conv's bias add): 16-byte vectors
// (NHWC: M % 8 == 0 for fp16 / bf16, M % 4 == 0 for fp32; NCHW: OH*OW % 8 or % 4),
// 8-byte vectors (half that), and the scalar kernel otherwise.

struct EpilogueCase {
  Dims x;  // [N, C, H, W] (logical); NHWC cases store it [N, H, W, C]
  int64_t m, k, pad;
  bool nhwc, bias, residual;
};

OpCase make_fused_conv(const EpilogueCase& e, DataType t, const std::string& act, std::vector<float> params = {}) {
  OpCase c("FusedConv", 1, "com.microsoft");
  c.attr("kernel_shape", Attribute::from_ints({e.k, e.k}));
  c.attr("pads", Attribute::from_ints({e.pad, e.pad, e.pad, e.pad}));
  if (!act.empty()) c.attr("activation", Attribute::from_string(act));
  if (!params.empty()) c.attr("activation_params", Attribute::from_floats(params));
  const int64_t n = e.x[0], ch = e.x[1], h = e.x[2], w = e.x[3];
  const int64_t oh = h + 2 * e.pad - e.k + 1, ow = w + 2 * e.pad - e.k + 1;
  if (e.nhwc) {
    c.attr("kiln.nhwc", Attribute::from_int(1));
    c.input(t, {n, h, w, ch}).input(t, {e.m, e.k, e.k, ch}, -0.5, 0.5);
  } else {
    c.input(t, {n, ch, h, w}).input(t, {e.m, ch, e.k, e.k}, -0.5, 0.5);
  }
  if (e.bias)
    c.input(t, {e.m});
  else if (e.residual)
    c.no_input();
  if (e.residual) c.input(t, e.nhwc ? Dims{n, oh, ow, e.m} : Dims{n, e.m, oh, ow});
  return c;
}

TEST(FusedConv, CudaEpilogueVectorWidthsLayoutsAndDtypes) {
  const std::vector<EpilogueCase> cases = {
      {{2, 8, 9, 7}, 16, 3, 1, true, true, false},   // NHWC, M % 8 == 0: 16-byte vectors
      {{2, 8, 9, 7}, 16, 3, 1, true, true, true},    // ... with a residual
      {{1, 5, 6, 7}, 12, 3, 1, true, true, true},    // M % 4 == 0: 8-byte (fp16) / 16-byte (fp32)
      {{1, 5, 6, 7}, 6, 1, 0, true, true, true},     // M % 2 == 0: scalar (fp16) / 8-byte (fp32)
      {{2, 3, 5, 5}, 3, 3, 1, true, true, false},    // M = 3: scalar
      {{2, 8, 4, 4}, 8, 3, 0, true, false, true},    // no bias, residual only
      {{2, 4, 4, 4}, 3, 1, 0, true, false, true},    // no bias: vectors span channels (96 elements)
      {{2, 3, 10, 10}, 5, 3, 1, false, true, true},  // NCHW, OH*OW = 100: 16-byte (fp32) / 8-byte (fp16)
      {{2, 3, 9, 7}, 4, 3, 1, false, true, true},    // OH*OW = 63: scalar
      {{1, 4, 7, 8}, 6, 3, 0, false, true, true},    // OH*OW = 30: 8-byte (fp32) / scalar (fp16)
      {{2, 4, 8, 8}, 3, 1, 0, false, true, false},   // OH*OW = 64: 16-byte for every dtype
      {{2, 4, 1, 1}, 8, 1, 0, false, true, true},    // OH*OW = 1: channels vary fastest, like NHWC
  };
  for (const Tol& t : kFloatTols)
    for (size_t i = 0; i < cases.size(); ++i)
      for (const char* act : {"Silu", "Relu", ""}) {
        SCOPED_TRACE(std::string(dtype_name(t.dtype)) + " case " + std::to_string(i) + " " + act);
        OpCase c = make_fused_conv(cases[i], t.dtype, act);
        EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
            << dtype_name(t.dtype) << " case " << i << " " << act;
      }
}

TEST(FusedConv, CudaEpilogueEveryActivation) {
  struct A {
    const char* name;
    std::vector<float> params;
  };
  const std::vector<A> acts = {
      {"Sigmoid", {}}, {"Tanh", {}}, {"LeakyRelu", {0.2f}}, {"Clip", {-0.5f, 0.7f}}, {"HardSigmoid", {0.3f, 0.4f}},
      {"Silu", {}}};
  const std::vector<EpilogueCase> cases = {{{2, 8, 6, 5}, 16, 3, 1, true, true, true},
                                           {{1, 3, 7, 7}, 3, 3, 1, true, true, true},
                                           {{2, 3, 8, 8}, 5, 3, 1, false, true, true},
                                           {{2, 3, 7, 7}, 5, 3, 1, false, true, true}};
  for (const Tol& t : kFloatTols)
    for (const A& a : acts)
      for (size_t i = 0; i < cases.size(); ++i) {
        SCOPED_TRACE(std::string(dtype_name(t.dtype)) + " case " + std::to_string(i) + " " + a.name);
        OpCase c = make_fused_conv(cases[i], t.dtype, a.name, a.params);
        EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
            << dtype_name(t.dtype) << " " << a.name << " case " << i;
      }
}

TEST(FusedConv, CudaEpilogueGridStrideLoops) {
  // More vectors / elements than one resident wave of threads (~270k on an H100).
  const std::vector<EpilogueCase> cases = {
      {{4, 8, 100, 100}, 64, 1, 0, true, true, true},   // NHWC fp16: 320k 16-byte vectors
      {{2, 4, 199, 199}, 8, 1, 0, false, true, true},   // NCHW, odd plane: 634k scalar elements
      {{2, 4, 200, 200}, 8, 1, 0, false, true, false},  // NCHW, even plane: 16-byte vectors
  };
  for (DataType dt : {DataType::kFloat16, DataType::kFloat32})
    for (size_t i = 0; i < cases.size(); ++i) {
      OpCase c = make_fused_conv(cases[i], dt, "Silu");
      const double tol = dt == DataType::kFloat32 ? 1e-4 : 1e-2;
      EXPECT_GE(c.expect_all_kernels_match(tol, tol), gpu_kernels()) << dtype_name(dt) << " case " << i;
    }
}

// A channels-last FusedConv case for kiln's own conv kernels (tactics of cuda.cudnn).
struct NhwcConvCase {
  Dims x;  // NHWC
  int64_t m, kh, kw, stride, pad, dilation;
  const char* act;
  bool bias, residual;
};

// Runs `d` at `t` with `tactic` against the reference; `offered`: whether the builder's
// candidate list must include the tactic (false: must not).
void expect_nhwc_conv_tactic(const NhwcConvCase& d, const Tol& t, int64_t tactic, bool offered) {
  OpCase c("FusedConv", 1, "com.microsoft");
  c.attr("kiln.nhwc", Attribute::from_int(1));
  c.attr("kernel_shape", Attribute::from_ints({d.kh, d.kw}));
  c.attr("strides", Attribute::from_ints({d.stride, d.stride}));
  c.attr("dilations", Attribute::from_ints({d.dilation, d.dilation}));
  c.attr("pads", Attribute::from_ints({d.pad, d.pad, d.pad, d.pad}));
  if (*d.act) c.attr("activation", Attribute::from_string(d.act));
  if (std::string(d.act) == "LeakyRelu") c.attr("activation_params", Attribute::from_floats({0.1f}));
  c.input(t.dtype, d.x).input(t.dtype, {d.m, d.kh, d.kw, d.x[3]}, -0.5, 0.5);
  const int64_t ekh = (d.kh - 1) * d.dilation + 1, ekw = (d.kw - 1) * d.dilation + 1;
  const int64_t oh = (d.x[1] + 2 * d.pad - ekh) / d.stride + 1, ow = (d.x[2] + 2 * d.pad - ekw) / d.stride + 1;
  if (d.bias)
    c.input(t.dtype, {d.m});
  else if (d.residual)
    c.no_input();
  if (d.residual) c.input(t.dtype, {d.x[0], oh, ow, d.m});
  auto ref = c.run("ref");
  ASSERT_TRUE(ref.ok()) << ref.status().to_string();
  std::vector<const Tensor*> ins;
  for (auto& in : c.inputs()) ins.push_back(in ? &*in : nullptr);
  // Offered: the tactic list the builder times includes it.
  std::vector<Tensor> outs{Tensor::empty(t.dtype, (*ref)[0].dims())};
  auto io = cuda::upload_node_io(c.node(), ins, outs);
  ASSERT_TRUE(io.ok()) << io.status().to_string();
  auto ids = cuda::node_tactics_on_device(c.node(), "cuda.cudnn", **io);
  ASSERT_TRUE(ids.ok()) << ids.status().to_string();
  EXPECT_EQ(std::find(ids->begin(), ids->end(), tactic) != ids->end(), offered);
  if (!offered) return;
  cuda::NodeRunOptions opts;
  opts.tactic = tactic;
  auto got = cuda::run_node_on_device(c.node(), "cuda.cudnn", ins, *ref, opts);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_TRUE(tensors_close((*got)[0], (*ref)[0], t.rtol, t.atol));
}

// A tactic offered for FP16/BF16 only: `taken` run as it and match the reference at those
// dtypes (and are not offered at FP32); `not_taken` are never offered.
void expect_half_only_tactic(const std::vector<NhwcConvCase>& taken, const std::vector<NhwcConvCase>& not_taken,
                             int64_t tactic) {
  for (const Tol& t : kFloatTols) {
    const bool half = t.dtype == DataType::kFloat16 || t.dtype == DataType::kBFloat16;
    for (size_t i = 0; i < taken.size(); ++i) {
      SCOPED_TRACE(std::string(dtype_name(t.dtype)) + " case " + std::to_string(i));
      expect_nhwc_conv_tactic(taken[i], t, tactic, half);
    }
    if (!half) continue;
    for (size_t i = 0; i < not_taken.size(); ++i) {
      SCOPED_TRACE(std::string(dtype_name(t.dtype)) + " not taken " + std::to_string(i));
      expect_nhwc_conv_tactic(not_taken[i], t, tactic, false);
    }
  }
}

// kiln's direct conv for few input channels (conv_direct_cuda.h), a tactic of the
// cuda.cudnn kernel: offered to the builder, and equal to the reference when chosen.
TEST(FusedConv, CudaDirectSmallChannelConvMatchesReference) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  const std::vector<NhwcConvCase> cases = {
      {{2, 17, 19, 4}, 16, 3, 3, 2, 1, 1, "Silu", true, false},       // the YOLOv8n stem (fp32 padding)
      {{1, 9, 8, 8}, 8, 3, 3, 1, 1, 1, "Relu", true, true},           // C = 8, 8-channel groups, residual
      {{2, 15, 13, 3}, 24, 7, 7, 2, 3, 1, "LeakyRelu", true, false},  // C = 3, M = 24: three groups of 8
      {{1, 6, 7, 1}, 16, 1, 1, 1, 0, 1, "", false, false},            // 1x1, no bias
      {{1, 12, 11, 4}, 32, 3, 3, 1, 2, 2, "Sigmoid", true, true},     // dilated, two groups of 16
      {{1, 740, 720, 4}, 16, 3, 3, 1, 1, 1, "Silu", true, false},     // 532,800 pixels: two per thread (fp32)
  };
  for (const Tol& t : kFloatTols)
    for (size_t i = 0; i < cases.size(); ++i) {
      if (cases[i].x[1] * cases[i].x[2] > (1 << 18) && t.dtype != DataType::kFloat32) continue;
      SCOPED_TRACE(std::string(dtype_name(t.dtype)) + " case " + std::to_string(i));
      expect_nhwc_conv_tactic(cases[i], t, ops::cudnn_graph::kDirectTactic, true);
    }
}

// kiln's tensor-core conv over 16 channels (conv_tc16_cuda.h: the space-to-depth stems),
// FP16/BF16: offered where it takes the conv, equal to the reference when chosen.
TEST(FusedConv, CudaTc16ConvMatchesReference) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  const std::vector<NhwcConvCase> cases = {
      {{2, 9, 19, 16}, 64, 4, 4, 1, 0, 1, "Relu", true, false},        // one 16-pixel tile a row
      {{1, 115, 115, 16}, 64, 4, 4, 1, 0, 1, "Relu", true, false},     // ResNet's s2d stem at batch 1
      {{3, 6, 40, 16}, 64, 2, 2, 1, 0, 1, "Silu", false, true},        // odd rows, ragged tile, residual
      {{1, 4, 259, 16}, 64, 4, 4, 1, 0, 1, "LeakyRelu", true, false},  // 256-pixel rows: 16 tiles, 8 warps
      {{2, 3, 5, 16}, 64, 1, 3, 1, 0, 1, "", true, true},              // 1x3, no activation
  };
  const std::vector<NhwcConvCase> not_taken = {
      {{1, 5, 300, 16}, 64, 3, 3, 1, 0, 1, "Relu", true, false},  // 298-pixel rows
      {{1, 9, 9, 16}, 64, 3, 3, 1, 1, 1, "Relu", true, false},    // padding
      {{1, 9, 9, 16}, 32, 3, 3, 1, 0, 1, "Relu", true, false},    // 32 outputs
      {{1, 9, 9, 8}, 64, 3, 3, 1, 0, 1, "Relu", true, false},     // 8 channels
      {{1, 9, 9, 16}, 64, 5, 5, 1, 0, 1, "Relu", true, false},    // a 5x5 kernel
  };
  expect_half_only_tactic(cases, not_taken, ops::cudnn_graph::kTc16Tactic);
}

// A channels-last 1x1 conv as one cuBLASLt GEMM over its pixels (matmul::lt_gemm_nt), FP16/BF16
// with ReLU or none: bias, residual and ReLU in the GEMM's epilogue, equal to the reference.
TEST(FusedConv, CudaLtGemm1x1ConvMatchesReference) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  const std::vector<NhwcConvCase> cases = {
      {{2, 7, 9, 64}, 256, 1, 1, 1, 0, 1, "Relu", true, true},   // ResNet's expanding conv: ReLU(conv + b + z)
      {{1, 5, 5, 32}, 48, 1, 1, 1, 0, 1, "", true, false},       // bias only
      {{3, 4, 6, 24}, 16, 1, 1, 1, 0, 1, "Relu", false, false},  // no bias
      {{1, 3, 3, 8}, 8, 1, 1, 1, 0, 1, "", false, true},         // residual only
  };
  const std::vector<NhwcConvCase> not_taken = {
      {{1, 8, 8, 32}, 32, 1, 1, 2, 0, 1, "Relu", true, false},  // stride 2
      {{1, 8, 8, 32}, 32, 3, 3, 1, 1, 1, "Relu", true, false},  // 3x3
      {{1, 8, 8, 32}, 32, 1, 1, 1, 0, 1, "Silu", true, false},  // an activation the epilogue lacks
  };
  expect_half_only_tactic(cases, not_taken, ops::cudnn_graph::kLtGemmTactic);
  // The heuristic's other configurations compute the same (the last rank: its first where it has fewer).
  const int64_t last = ops::cudnn_graph::kLtGemmTactic + ops::cudnn_graph::kLtGemmRanks - 1;
  expect_half_only_tactic({cases[0]}, {}, last);
}

// FusedConv with kiln.max_pool (passes/fuse_conv_maxpool.cc): kiln's 16-channel tensor-core conv
// with ResNet's 3x3 / 2 stem pool in its epilogue, against the reference (conv, then pool).
TEST(FusedConv, CudaTc16ConvWithFusedMaxPoolMatchesReference) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  struct D {
    Dims x;  // NHWC
    int64_t k;
    const char* act;
  };
  const std::vector<D> cases = {
      {{2, 9, 19, 16}, 4, "Relu"},     // 6 x 16 conv rows: 3 x 8 pooled
      {{1, 115, 115, 16}, 4, "Relu"},  // ResNet's s2d stem at batch 1: bands of a few pooled rows
      {{3, 8, 40, 16}, 2, ""},         // odd conv rows (7) and columns (39), no activation
      {{5, 12, 20, 16}, 3, "Relu"},    // five images
      {{1, 6, 131, 16}, 4, ""},        // 128-pixel conv rows
  };
  for (const Tol& t : kFloatTols) {
    if (t.dtype == DataType::kFloat32) continue;
    for (size_t i = 0; i < cases.size(); ++i) {
      const D& d = cases[i];
      SCOPED_TRACE(std::string(dtype_name(t.dtype)) + " case " + std::to_string(i));
      OpCase c("FusedConv", 1, "com.microsoft");
      c.attr("kiln.nhwc", Attribute::from_int(1));
      c.attr("kernel_shape", Attribute::from_ints({d.k, d.k}));
      c.attr("kiln.max_pool", Attribute::from_ints({3, 3, 2, 2, 1, 1, 1, 1}));
      if (*d.act) c.attr("activation", Attribute::from_string(d.act));
      std::mt19937 rng(11 + static_cast<unsigned>(i));
      Tensor x = random_tensor(t.dtype, d.x, rng, -1, 1);
      // Without an activation, a NaN input pixel: the conv outputs it reaches are NaN; windows of only
      // those give NaN, the others their numbers' maximum.
      if (!*d.act) x.set_from_double(((d.x[1] / 2) * d.x[2] + d.x[2] / 2) * 16 + 3, std::nan(""));
      c.input(x).input(t.dtype, {64, d.k, d.k, 16}, -0.5, 0.5).input(t.dtype, {64});
      auto ref = c.run("ref");
      ASSERT_TRUE(ref.ok()) << ref.status().to_string();
      const int64_t oh = d.x[1] - d.k + 1, ow = d.x[2] - d.k + 1;
      EXPECT_EQ((*ref)[0].dims(), (Dims{d.x[0], (oh - 1) / 2 + 1, (ow - 1) / 2 + 1, 64}));
      std::vector<const Tensor*> ins;
      for (auto& in : c.inputs()) ins.push_back(in ? &*in : nullptr);
      auto got = cuda::run_node_on_device(c.node(), "cuda.cudnn", ins, *ref, cuda::NodeRunOptions{});
      ASSERT_TRUE(got.ok()) << got.status().to_string();
      EXPECT_TRUE(tensors_close((*got)[0], (*ref)[0], t.rtol, t.atol));
    }
  }
  // A conv the kernel does not take (8 channels) is an error naming the attribute, not a crash.
  OpCase c("FusedConv", 1, "com.microsoft");
  c.attr("kiln.nhwc", Attribute::from_int(1)).attr("kernel_shape", Attribute::from_ints({3, 3}));
  c.attr("kiln.max_pool", Attribute::from_ints({3, 3, 2, 2, 1, 1, 1, 1}));
  c.input(DataType::kFloat16, {1, 9, 9, 8}).input(DataType::kFloat16, {64, 3, 3, 8});
  auto ref = c.run("ref");
  ASSERT_TRUE(ref.ok()) << ref.status().to_string();
  std::vector<const Tensor*> ins;
  for (auto& in : c.inputs()) ins.push_back(in ? &*in : nullptr);
  auto got = cuda::run_node_on_device(c.node(), "cuda.cudnn", ins, *ref, cuda::NodeRunOptions{});
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("max pool"), std::string::npos) << got.status().message();
}

TEST(FusedConv, CudaDirectConvReadsNchwInput) {
  // kiln.nchw_input: X stays [N, C, H, W], W is OHWI and Y NHWC; only the direct conv runs it.
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  struct D {
    Dims x;  // NCHW
    int64_t m, k, stride, pad;
    const char* act;
    bool bias;
  };
  const std::vector<D> cases = {
      {{3, 3, 37, 41}, 16, 3, 2, 1, "Silu", true},    // the YOLOv8n stem, odd sizes, several chunks
      {{1, 1, 9, 8}, 8, 3, 1, 1, "Relu", true},       // one channel
      {{2, 4, 11, 10}, 24, 2, 2, 0, "", false},       // four channels, three groups of 8, no bias
      {{1, 3, 740, 720}, 16, 3, 1, 1, "Silu", true},  // 532,800 pixels: two per thread (float32 only)
  };
  for (const Tol& t : kFloatTols)
    for (size_t i = 0; i < cases.size(); ++i) {
      const D& d = cases[i];
      if (d.x[2] * d.x[3] > (1 << 18) && t.dtype != DataType::kFloat32) continue;
      SCOPED_TRACE(std::string(dtype_name(t.dtype)) + " case " + std::to_string(i));
      OpCase c("FusedConv", 1, "com.microsoft");
      c.attr("kiln.nhwc", Attribute::from_int(1)).attr("kiln.nchw_input", Attribute::from_int(1));
      c.attr("kernel_shape", Attribute::from_ints({d.k, d.k}));
      c.attr("strides", Attribute::from_ints({d.stride, d.stride}));
      c.attr("pads", Attribute::from_ints({d.pad, d.pad, d.pad, d.pad}));
      if (*d.act) c.attr("activation", Attribute::from_string(d.act));
      c.input(t.dtype, d.x).input(t.dtype, {d.m, d.k, d.k, d.x[1]}, -0.5, 0.5);
      if (d.bias) c.input(t.dtype, {d.m});
      auto ref = c.run("ref");  // the NHWC adapter, leaving X in NCHW
      ASSERT_TRUE(ref.ok()) << ref.status().to_string();
      const int64_t oh = (d.x[2] + 2 * d.pad - d.k) / d.stride + 1, ow = (d.x[3] + 2 * d.pad - d.k) / d.stride + 1;
      ASSERT_EQ((*ref)[0].dims(), (Dims{d.x[0], oh, ow, d.m}));
      std::vector<const Tensor*> ins;
      for (auto& in : c.inputs()) ins.push_back(in ? &*in : nullptr);
      auto got = cuda::run_node_on_device(c.node(), "cuda.cudnn", ins, *ref, cuda::NodeRunOptions{});
      ASSERT_TRUE(got.ok()) << got.status().to_string();
      EXPECT_TRUE(tensors_close((*got)[0], (*ref)[0], t.rtol, t.atol));
    }
}

TEST(Conv, CudaBiasAddVectorAndScalarPaths) {
  // Conv / ConvTranspose add the bias after cuDNN: OH*OW = 64 (vectors), 49 (scalar), 36 (16-byte fp32, 8-byte fp16).
  const std::vector<ConvCase> cases = {
      {{2, 3, 8, 8}, {5, 3, 3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}},
      {{2, 3, 9, 9}, {5, 3, 3, 3}, {1, 1}, {1, 1}, {0, 0, 0, 0}},
      {{1, 3, 7, 8}, {4, 3, 2, 3}, {1, 1}, {1, 1}, {0, 0, 0, 0}},
  };
  for (const Tol& t : kFloatTols)
    for (size_t i = 0; i < cases.size(); ++i) {
      OpCase c = make_conv_case("Conv", cases[i], t.dtype);
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels()) << dtype_name(t.dtype) << " case " << i;
      ConvCase k = cases[i];
      k.w = {k.w[1], k.w[0], k.w[2], k.w[3]};  // ConvTranspose: W is [C, M, kH, kW]
      OpCase ct = make_conv_case("ConvTranspose", k, t.dtype);
      EXPECT_GE(ct.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels()) << dtype_name(t.dtype) << " T " << i;
    }
}

}  // namespace
}  // namespace kiln::test

#include <cmath>

#include "harness/op_harness.h"

namespace kiln::test {
namespace {

using ir::Attribute;

TEST(Loss, NllWeightedMeanIgnoreIndexMatchesNaive) {
  // input [N=3, C=4, d=2]; target [3, 2] with one ignored element.
  auto target = Tensor::from_vector<int>(DataType::kInt64, {3, 2}, {0, 3, 2, 1, 1, 2});
  for (const char* red : {"none", "sum", "mean"}) {
    OpCase c("NegativeLogLikelihoodLoss", 13);
    c.attr("reduction", Attribute::from_string(red)).attr("ignore_index", Attribute::from_int(1));
    c.input(DataType::kFloat32, {3, 4, 2}).input(target).input(DataType::kFloat32, {4}, 0.5, 2);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const Tensor& x = *c.inputs()[0];
    const Tensor& w = *c.inputs()[2];
    std::vector<double> l(6);
    double sum = 0, wsum = 0;
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t d = 0; d < 2; ++d) {
        int64_t t = target.get_as_int64(n * 2 + d);
        if (t == 1) continue;
        l[n * 2 + d] = -x.get_as_double((n * 4 + t) * 2 + d) * w.get_as_double(t);
        sum += l[n * 2 + d];
        wsum += w.get_as_double(t);
      }
    if (std::string(red) == "none") {
      ASSERT_EQ((*out)[0].dims(), (Dims{3, 2}));
      for (int64_t i = 0; i < 6; ++i) EXPECT_NEAR((*out)[0].get_as_double(i), l[i], 1e-6);
    } else {
      ASSERT_EQ((*out)[0].rank(), 0);
      EXPECT_NEAR((*out)[0].get_as_double(0), std::string(red) == "sum" ? sum : sum / wsum, 1e-6);
    }
  }
}

TEST(Loss, SoftmaxCrossEntropyIsNllOfLogSoftmax) {
  auto target = Tensor::from_vector<int>(DataType::kInt32, {2, 3}, {0, 4, 2, 1, 3, 3});
  OpCase c("SoftmaxCrossEntropyLoss", 13);
  c.attr("reduction", Attribute::from_string("none")).outputs(2);
  c.input(DataType::kFloat64, {2, 5, 3}, -3, 3).input(target);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t d = 0; d < 3; ++d) {
      double s = 0;
      for (int64_t k = 0; k < 5; ++k) s += std::exp(x.get_as_double((n * 5 + k) * 3 + d));
      for (int64_t k = 0; k < 5; ++k)
        EXPECT_NEAR((*out)[1].get_as_double((n * 5 + k) * 3 + d), x.get_as_double((n * 5 + k) * 3 + d) - std::log(s), 1e-12);
      int64_t t = target.get_as_int64(n * 3 + d);
      EXPECT_NEAR((*out)[0].get_as_double(n * 3 + d), std::log(s) - x.get_as_double((n * 5 + t) * 3 + d), 1e-12);
    }
}

TEST(Loss, Errors) {
  OpCase c("NegativeLogLikelihoodLoss", 13);  // target out of range
  c.input(DataType::kFloat32, {2, 3}).input(Tensor::from_vector<int>(DataType::kInt64, {2}, {0, 3}));
  EXPECT_FALSE(c.run().ok());
  OpCase d("SoftmaxCrossEntropyLoss", 13);  // bad reduction
  d.attr("reduction", Attribute::from_string("avg"));
  d.input(DataType::kFloat32, {2, 3}).input(Tensor::from_vector<int>(DataType::kInt64, {2}, {0, 1}));
  EXPECT_FALSE(d.run().ok());
  OpCase e("NegativeLogLikelihoodLoss", 13);  // target shape mismatch
  e.input(DataType::kFloat32, {2, 3, 4}).input(Tensor::from_vector<int>(DataType::kInt64, {2, 3}, {0, 1, 0, 1, 0, 1}));
  EXPECT_FALSE(e.run().ok());
}

}  // namespace
}  // namespace kiln::test

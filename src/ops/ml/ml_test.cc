#include "harness/op_harness.h"

namespace kiln::test {
namespace {

TEST(MlBinarizer, ThresholdsEachElement) {
  OpCase c("Binarizer", 1, "ai.onnx.ml");
  c.attr("threshold", ir::Attribute::from_float(0.25f)).input(DataType::kFloat32, {3, 7});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ((*out)[0].get_as_double(i), x.get_as_double(i) > 0.25 ? 1.0 : 0.0);
}

TEST(MlArrayFeatureExtractor, GathersLastAxis) {
  OpCase c("ArrayFeatureExtractor", 1, "ai.onnx.ml");
  c.input(DataType::kInt64, {2, 3, 5}, -50, 50).input(Tensor::from_vector(DataType::kInt64, {3}, std::vector<int64_t>{4, 0, 4}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  ASSERT_EQ((*out)[0].dims(), (Dims{2, 3, 3}));
  const Tensor& x = *c.inputs()[0];
  int64_t idx[3] = {4, 0, 4};
  for (int64_t r = 0; r < 6; ++r)
    for (int k = 0; k < 3; ++k) EXPECT_EQ((*out)[0].get_as_int64(r * 3 + k), x.get_as_int64(r * 5 + idx[k]));
  OpCase bad("ArrayFeatureExtractor", 1, "ai.onnx.ml");
  bad.input(DataType::kFloat32, {4}).input(Tensor::from_vector(DataType::kInt64, {1}, std::vector<int64_t>{4}));
  EXPECT_FALSE(bad.run().ok());
}

TEST(MlTreeEnsemble, TwoTreesSumPerTarget) {
  // Tree 0: x0 <= 0 ? leaf0 (t0, 1.5) : leaf1 (t1, -2). Tree 1 (root 1): x1 > 0.3 ? leaf2 (t0, 4) : leaf3 (t1, 0.25).
  OpCase c("TreeEnsemble", 5, "ai.onnx.ml");
  c.attr("nodes_splits", ir::Attribute::from_tensor(Tensor::from_vector(DataType::kFloat32, {2}, std::vector<float>{0.f, 0.3f})));
  c.attr("nodes_modes", ir::Attribute::from_tensor(Tensor::from_vector(DataType::kUInt8, {2}, std::vector<int>{0, 3})));
  c.attr("nodes_featureids", ir::Attribute::from_ints({0, 1}));
  c.attr("nodes_truenodeids", ir::Attribute::from_ints({0, 2}));
  c.attr("nodes_falsenodeids", ir::Attribute::from_ints({1, 3}));
  c.attr("nodes_trueleafs", ir::Attribute::from_ints({1, 1}));
  c.attr("nodes_falseleafs", ir::Attribute::from_ints({1, 1}));
  c.attr("leaf_targetids", ir::Attribute::from_ints({0, 1, 0, 1}));
  c.attr("leaf_weights", ir::Attribute::from_tensor(Tensor::from_vector(DataType::kFloat32, {4}, std::vector<float>{1.5f, -2.f, 4.f, 0.25f})));
  c.attr("tree_roots", ir::Attribute::from_ints({0, 1}));
  c.attr("n_targets", ir::Attribute::from_int(2));
  c.input(DataType::kFloat32, {9, 2});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  for (int64_t r = 0; r < 9; ++r) {
    double t0 = 0, t1 = 0;
    if (x.get_as_double(r * 2) <= 0) t0 += 1.5; else t1 += -2;
    if (x.get_as_double(r * 2 + 1) > 0.3) t0 += 4; else t1 += 0.25;
    EXPECT_NEAR((*out)[0].get_as_double(r * 2), t0, 1e-6);
    EXPECT_NEAR((*out)[0].get_as_double(r * 2 + 1), t1, 1e-6);
  }
  OpCase bad("TreeEnsemble", 5, "ai.onnx.ml");
  bad.attr("n_targets", ir::Attribute::from_int(2)).attr("tree_roots", ir::Attribute::from_ints({3}));
  bad.input(DataType::kFloat32, {2, 2});
  EXPECT_FALSE(bad.run().ok());
}

TEST(MlTfIdf, CountsSkipBigrams) {
  OpCase c("TfIdfVectorizer", 9);
  c.attr("mode", ir::Attribute::from_string("TFIDF")).attr("min_gram_length", ir::Attribute::from_int(1));
  c.attr("max_gram_length", ir::Attribute::from_int(2)).attr("max_skip_count", ir::Attribute::from_int(1));
  c.attr("ngram_counts", ir::Attribute::from_ints({0, 2})).attr("ngram_indexes", ir::Attribute::from_ints({0, 1, 2}));
  c.attr("pool_int64s", ir::Attribute::from_ints({1, 2, 1, 2})).attr("weights", ir::Attribute::from_floats({1.f, 2.f, 0.5f}));
  c.input(DataType::kInt64, {2, 10}, 0, 3);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  ASSERT_EQ((*out)[0].dims(), (Dims{2, 3}));
  const Tensor& x = *c.inputs()[0];
  for (int r = 0; r < 2; ++r) {
    double ones = 0, twos = 0, bi = 0;
    for (int i = 0; i < 10; ++i) {
      int64_t v = x.get_as_int64(r * 10 + i);
      ones += v == 1;
      twos += v == 2;
      for (int d = 1; d <= 2; ++d)
        if (i + d < 10 && v == 1 && x.get_as_int64(r * 10 + i + d) == 2) bi += 1;
    }
    EXPECT_EQ((*out)[0].get_as_double(r * 3), ones * 1);
    EXPECT_EQ((*out)[0].get_as_double(r * 3 + 1), twos * 2);
    EXPECT_EQ((*out)[0].get_as_double(r * 3 + 2), bi * 0.5);
  }
  OpCase bad("TfIdfVectorizer", 9);
  bad.attr("mode", ir::Attribute::from_string("XX")).attr("min_gram_length", ir::Attribute::from_int(1));
  bad.attr("max_gram_length", ir::Attribute::from_int(1)).input(DataType::kInt32, {4}, 0, 3);
  EXPECT_FALSE(bad.run().ok());
}

}  // namespace
}  // namespace kiln::test

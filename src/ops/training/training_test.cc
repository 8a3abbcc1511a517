#include <cmath>

#include "harness/op_harness.h"

namespace kiln::test {
namespace {

using ir::Attribute;

constexpr const char* kDomain = "ai.onnx.preview.training";

Tensor scalar_r(DataType t, double r) { return Tensor::from_vector<double>(t, {}, {r}); }
Tensor scalar_t(int64_t t) { return Tensor::from_vector<int64_t>(DataType::kInt64, {}, {t}); }

const std::vector<Dims> kShapes = {{3, 4}, {5}, {2, 1, 3}};

// Adds R, T and `groups` inputs per tensor of kShapes, in the spec's kind-by-kind order.
// A last group that is an accumulated square (H) is kept positive.
void add_inputs(OpCase& c, DataType dt, double r, int64_t t, int groups, bool positive_last) {
  c.input(scalar_r(dt, r)).input(scalar_t(t));
  for (int g = 0; g < groups; ++g)
    for (const Dims& d : kShapes)
      if (g == groups - 1 && positive_last)
        c.input(dt, d, 0.05, 2.0);
      else
        c.input(dt, d, -2.0, 2.0);
}

double in(OpCase& c, size_t i, int64_t k) { return c.inputs()[i]->get_as_double(k); }

TEST(Training, AdagradMatchesNaive) {
  for (DataType dt : {DataType::kFloat32, DataType::kFloat64})
    for (int64_t t : {0, 3}) {
      // Attributes are float32: use float literals so double runs compare exactly.
      const double decay = 0.25f, norm = 0.01f, eps = 1e-3f, r = 0.1;
      OpCase c("Adagrad", 1, kDomain);
      c.attr("decay_factor", Attribute::from_float(decay)).attr("norm_coefficient", Attribute::from_float(norm));
      c.attr("epsilon", Attribute::from_float(eps)).outputs(6);
      add_inputs(c, dt, r, t, 3, true);
      auto out = c.run();
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      const double tol = dt == DataType::kFloat32 ? 1e-5 : 1e-12;
      const double ra = r / (1 + t * decay);
      for (size_t i = 0; i < 3; ++i) {
        ASSERT_EQ((*out)[i].dims(), kShapes[i]);
        for (int64_t k = 0; k < dims_volume(kShapes[i]); ++k) {
          double x = in(c, 2 + i, k), g = in(c, 5 + i, k), h = in(c, 8 + i, k);
          double gr = norm * x + g, hn = h + gr * gr;
          EXPECT_NEAR((*out)[3 + i].get_as_double(k), hn, tol * (1 + std::fabs(hn)));
          double xn = x - ra * gr / (std::sqrt(hn) + eps);
          EXPECT_NEAR((*out)[i].get_as_double(k), xn, tol * (1 + std::fabs(xn)));
        }
      }
    }
}

TEST(Training, AdamMatchesNaive) {
  for (DataType dt : {DataType::kFloat32, DataType::kFloat64})
    for (int64_t t : {0, 2}) {
      const double alpha = 0.8f, beta = 0.9f, norm = 0.02f, post = 0.05f, eps = 1e-2f, r = 0.3;
      OpCase c("Adam", 1, kDomain);
      c.attr("alpha", Attribute::from_float(alpha)).attr("beta", Attribute::from_float(beta));
      c.attr("norm_coefficient", Attribute::from_float(norm))
          .attr("norm_coefficient_post", Attribute::from_float(post));
      c.attr("epsilon", Attribute::from_float(eps)).outputs(9);
      add_inputs(c, dt, r, t, 4, true);
      auto out = c.run();
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      const double tol = dt == DataType::kFloat32 ? 1e-5 : 1e-12;
      const double ra = t > 0 ? r * std::sqrt(1 - std::pow(beta, t)) / (1 - std::pow(alpha, t)) : r;
      for (size_t i = 0; i < 3; ++i)
        for (int64_t k = 0; k < dims_volume(kShapes[i]); ++k) {
          double x = in(c, 2 + i, k), g = in(c, 5 + i, k), v = in(c, 8 + i, k), h = in(c, 11 + i, k);
          double gr = norm * x + g;
          double vn = alpha * v + (1 - alpha) * gr;
          double hn = beta * h + (1 - beta) * gr * gr;
          double xn = (1 - post) * (x - ra * vn / (std::sqrt(hn) + eps));
          EXPECT_NEAR((*out)[i].get_as_double(k), xn, tol * (1 + std::fabs(xn)));
          EXPECT_NEAR((*out)[3 + i].get_as_double(k), vn, tol * (1 + std::fabs(vn)));
          EXPECT_NEAR((*out)[6 + i].get_as_double(k), hn, tol * (1 + std::fabs(hn)));
        }
    }
}

TEST(Training, MomentumStandardAndNesterovMatchNaive) {
  for (const char* mode : {"standard", "nesterov"})
    for (DataType dt : {DataType::kFloat32, DataType::kFloat64})
      for (int64_t t : {0, 5}) {
        const double alpha = 0.7f, beta = 0.4f, norm = 0.03f, r = 0.2;
        OpCase c("Momentum", 1, kDomain);
        c.attr("alpha", Attribute::from_float(alpha)).attr("beta", Attribute::from_float(beta));
        c.attr("norm_coefficient", Attribute::from_float(norm)).attr("mode", Attribute::from_string(mode)).outputs(6);
        add_inputs(c, dt, r, t, 3, false);
        auto out = c.run();
        ASSERT_TRUE(out.ok()) << out.status().to_string();
        const double tol = dt == DataType::kFloat32 ? 1e-5 : 1e-12;
        const double ba = t > 0 ? beta : 1.0;
        for (size_t i = 0; i < 3; ++i)
          for (int64_t k = 0; k < dims_volume(kShapes[i]); ++k) {
            double x = in(c, 2 + i, k), g = in(c, 5 + i, k), v = in(c, 8 + i, k);
            double gr = norm * x + g;
            double vn = alpha * v + ba * gr;
            double xn = std::string(mode) == "nesterov" ? x - r * (gr + alpha * vn) : x - r * vn;
            EXPECT_NEAR((*out)[i].get_as_double(k), xn, tol * (1 + std::fabs(xn)));
            EXPECT_NEAR((*out)[3 + i].get_as_double(k), vn, tol * (1 + std::fabs(vn)));
          }
      }
}

TEST(Training, Errors) {
  {  // inputs not a multiple of the group size
    OpCase c("Adagrad", 1, kDomain);
    c.outputs(2).input(scalar_r(DataType::kFloat32, 0.1)).input(scalar_t(0));
    c.input(DataType::kFloat32, {2}).input(DataType::kFloat32, {2});
    EXPECT_FALSE(c.run().ok());
  }
  {  // G's shape differs from X's
    OpCase c("Adagrad", 1, kDomain);
    c.outputs(2).input(scalar_r(DataType::kFloat32, 0.1)).input(scalar_t(0));
    c.input(DataType::kFloat32, {2}).input(DataType::kFloat32, {3}).input(DataType::kFloat32, {2});
    EXPECT_FALSE(c.run().ok());
  }
  {  // wrong output count
    OpCase c("Adam", 1, kDomain);
    c.outputs(2).input(scalar_r(DataType::kFloat32, 0.1)).input(scalar_t(0));
    for (int g = 0; g < 4; ++g) c.input(DataType::kFloat32, {2});
    EXPECT_FALSE(c.run().ok());
  }
  {  // Momentum's attributes are required, and mode must be known
    OpCase c("Momentum", 1, kDomain);
    c.outputs(2).input(scalar_r(DataType::kFloat32, 0.1)).input(scalar_t(0));
    for (int g = 0; g < 3; ++g) c.input(DataType::kFloat32, {2});
    EXPECT_FALSE(c.run().ok());
    OpCase d("Momentum", 1, kDomain);
    d.attr("alpha", Attribute::from_float(0.5f)).attr("beta", Attribute::from_float(0.5f));
    d.attr("norm_coefficient", Attribute::from_float(0.0f)).attr("mode", Attribute::from_string("heavy"));
    d.outputs(2).input(scalar_r(DataType::kFloat32, 0.1)).input(scalar_t(0));
    for (int g = 0; g < 3; ++g) d.input(DataType::kFloat32, {2});
    EXPECT_FALSE(d.run().ok());
  }
  {  // integer tensors are not optimizable; T must be int64
    OpCase c("Adagrad", 1, kDomain);
    c.outputs(2).input(scalar_r(DataType::kFloat32, 0.1)).input(scalar_t(0));
    for (int g = 0; g < 3; ++g) c.input(DataType::kInt32, {2});
    EXPECT_FALSE(c.run().ok());
    OpCase d("Adagrad", 1, kDomain);
    d.outputs(2).input(scalar_r(DataType::kFloat32, 0.1)).input(Tensor::from_vector<int>(DataType::kInt32, {}, {0}));
    for (int g = 0; g < 3; ++g) d.input(DataType::kFloat32, {2});
    EXPECT_FALSE(d.run().ok());
  }
}

}  // namespace
}  // namespace kiln::test

#include <cmath>
#include <limits>

#include "ops/unary/eltwise_test_util.h"

namespace kiln::test {
namespace {

using F1 = std::function<double(double)>;
const double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// Runs a unary op on random inputs in [lo, hi] and compares with f in double.
void check_unary(OpCase& c, DataType t, double lo, double hi, const F1& f, double atol = 1e-6) {
  c.input(t, {3, 4, 5}, lo, hi);
  auto ins = case_inputs(c);
  Tensor want = expected_eltwise(t, {3, 4, 5}, ins, [&](const std::vector<double>& v) { return f(v[0]); });
  SCOPED_TRACE(c.node().op_type + " " + dtype_name(t));
  expect_case(c, want, rtol_for(t), atol);
}

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
double softplus(double x) { return std::log(1 + std::exp(x)); }

struct MathCase {
  const char* op;
  double lo, hi;
  F1 f;
};

const std::vector<MathCase>& math_cases() {
  static const std::vector<MathCase> k = {
      {"Abs", -5, 5, [](double x) { return std::fabs(x); }},
      {"Neg", -5, 5, [](double x) { return -x; }},
      {"Exp", -5, 5, [](double x) { return std::exp(x); }},
      {"Log", 0.01, 50, [](double x) { return std::log(x); }},
      {"Sqrt", 0, 50, [](double x) { return std::sqrt(x); }},
      {"Reciprocal", 0.5, 5, [](double x) { return 1 / x; }},
      {"Floor", -5, 5, [](double x) { return std::floor(x); }},
      {"Ceil", -5, 5, [](double x) { return std::ceil(x); }},
      {"Sign", -5, 5, [](double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }},
      {"Sin", -5, 5, [](double x) { return std::sin(x); }},
      {"Cos", -5, 5, [](double x) { return std::cos(x); }},
      {"Tan", -1.4, 1.4, [](double x) { return std::tan(x); }},
      {"Asin", -0.99, 0.99, [](double x) { return std::asin(x); }},
      {"Acos", -0.99, 0.99, [](double x) { return std::acos(x); }},
      {"Atan", -5, 5, [](double x) { return std::atan(x); }},
      {"Sinh", -4, 4, [](double x) { return std::sinh(x); }},
      {"Cosh", -4, 4, [](double x) { return std::cosh(x); }},
      {"Tanh", -4, 4, [](double x) { return std::tanh(x); }},
      {"Asinh", -5, 5, [](double x) { return std::asinh(x); }},
      {"Acosh", 1, 10, [](double x) { return std::acosh(x); }},
      {"Atanh", -0.95, 0.95, [](double x) { return std::atanh(x); }},
      {"Erf", -3, 3, [](double x) { return std::erf(x); }},
      {"Sigmoid", -8, 8, sigmoid},
      {"Softplus", -8, 8, softplus},
      {"Softsign", -8, 8, [](double x) { return x / (1 + std::fabs(x)); }},
      {"Mish", -8, 8, [](double x) { return x * std::tanh(softplus(x)); }},
      {"HardSwish", -5, 5, [](double x) { return x * std::max(0.0, std::min(1.0, x / 6 + 0.5)); }},
      {"Relu", -5, 5, [](double x) { return std::max(0.0, x); }},
  };
  return k;
}

TEST(UnaryOps, MathMatchesStdOnEveryFloatType) {
  for (const MathCase& m : math_cases())
    for (DataType t : {DataType::kFloat32, DataType::kFloat64, DataType::kFloat16, DataType::kBFloat16}) {
      OpCase c(m.op, 22);
      // Half types: the rounded input is what f sees, so only the output rounding differs.
      check_unary(c, t, m.lo, m.hi, m.f, t == DataType::kFloat32 || t == DataType::kFloat64 ? 1e-6 : 1e-2);
    }
}

TEST(UnaryOps, RoundIsHalfToEven) {
  OpCase c("Round", 22);
  c.input(
      make_tensor(DataType::kFloat32, {10}, std::vector<double>{0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.4, 2.6, -2.6, 3.5}));
  Tensor want = make_tensor(DataType::kFloat32, {10}, std::vector<double>{0, 2, 2, -0, -2, -2, 0, 3, -3, 4});
  expect_case(c, want, 0, 0);
}

TEST(UnaryOps, ActivationAttributes) {
  auto attr = [](OpCase& c, const char* n, float v) { c.attr(n, ir::Attribute::from_float(v)); };
  {
    OpCase c("LeakyRelu", 16);
    attr(c, "alpha", 0.3f);
    check_unary(c, DataType::kFloat32, -5, 5, [](double x) { return x < 0 ? 0.3f * x : x; });
  }
  {
    OpCase c("LeakyRelu", 16);  // default alpha 0.01
    check_unary(c, DataType::kFloat32, -5, 5, [](double x) { return x < 0 ? 0.01f * x : x; });
  }
  {
    OpCase c("Elu", 22);
    attr(c, "alpha", 2.0f);
    check_unary(c, DataType::kFloat32, -5, 5, [](double x) { return x < 0 ? 2 * (std::exp(x) - 1) : x; });
  }
  {
    OpCase c("Selu", 22);
    check_unary(c, DataType::kFloat64, -5, 5, [](double x) {
      const double a = 1.67326319217681884765625, g = 1.05070102214813232421875;
      return x > 0 ? g * x : g * (a * std::exp(x) - a);
    });
  }
  {
    OpCase c("Celu", 22);
    attr(c, "alpha", 2.0f);
    check_unary(c, DataType::kFloat32, -5, 5,
                [](double x) { return std::max(0.0, x) + std::min(0.0, 2 * (std::exp(x / 2) - 1)); });
  }
  {
    OpCase c("HardSigmoid", 22);
    attr(c, "alpha", 0.5f);
    attr(c, "beta", 0.6f);
    check_unary(c, DataType::kFloat32, -5, 5,
                [](double x) { return std::max(0.0, std::min(1.0, 0.5 * x + double(0.6f))); });
  }
  {
    OpCase c("ThresholdedRelu", 22);
    attr(c, "alpha", 1.5f);
    check_unary(c, DataType::kFloat32, -5, 5, [](double x) { return x > 1.5 ? x : 0; });
  }
  {
    OpCase c("Swish", 24);
    attr(c, "alpha", 0.5f);
    check_unary(c, DataType::kFloat32, -5, 5, [](double x) { return x * sigmoid(0.5 * x); });
  }
  {
    OpCase c("Shrink", 9);
    attr(c, "lambd", 1.5f);
    attr(c, "bias", 0.5f);
    check_unary(c, DataType::kFloat32, -5, 5, [](double x) { return x < -1.5 ? x + 0.5 : (x > 1.5 ? x - 0.5 : 0); });
  }
}

TEST(UnaryOps, GeluBothForms) {
  const double k = std::sqrt(2 / M_PI);
  {
    OpCase c("Gelu", 20);
    check_unary(c, DataType::kFloat32, -5, 5, [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); });
  }
  {
    OpCase c("Gelu", 20);
    c.attr("approximate", ir::Attribute::from_string("tanh"));
    check_unary(c, DataType::kFloat32, -5, 5,
                [k](double x) { return 0.5 * x * (1 + std::tanh(k * (x + 0.044715 * x * x * x))); });
  }
  {
    OpCase c("Gelu", 1, "com.microsoft");
    check_unary(c, DataType::kFloat32, -5, 5, [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); });
  }
  {
    OpCase c("Gelu", 20);
    c.attr("approximate", ir::Attribute::from_string("fast"));
    c.input(DataType::kFloat32, {3});
    auto out = c.run();
    ASSERT_FALSE(out.ok());
    EXPECT_NE(out.status().message().find("approximate"), std::string::npos) << out.status().message();
  }
}

TEST(UnaryOps, ContribGelusAddBiasAlongLastAxis) {
  const double k = std::sqrt(2 / M_PI);
  OpCase c("FastGelu", 1, "com.microsoft");
  c.input(DataType::kFloat32, {2, 3, 4}, -3, 3).input(DataType::kFloat32, {4}, -1, 1);
  auto ins = case_inputs(c);
  Tensor want = expected_eltwise(DataType::kFloat32, {2, 3, 4}, ins, [k](const std::vector<double>& v) {
    double x = v[0] + v[1];
    return 0.5 * x * (1 + std::tanh(k * (x + 0.044715 * x * x * x)));
  });
  expect_case(c, want, 1e-5, 1e-6);
  OpCase bias_gelu("BiasGelu", 1, "com.microsoft");
  bias_gelu.input(DataType::kFloat32, {2, 3, 4}, -3, 3).input(DataType::kFloat32, {4}, -1, 1);
  Tensor want_erf =
      expected_eltwise(DataType::kFloat32, {2, 3, 4}, case_inputs(bias_gelu), [](const std::vector<double>& v) {
        double x = v[0] + v[1];
        return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
      });
  expect_case(bias_gelu, want_erf, 1e-5, 1e-6);
  OpCase quick("QuickGelu", 1, "com.microsoft");
  check_unary(quick, DataType::kFloat32, -5, 5, [](double x) { return x * sigmoid(double(1.702f) * x); });
  OpCase bad("FastGelu", 1, "com.microsoft");
  bad.input(DataType::kFloat32, {2, 3}).input(DataType::kFloat32, {4});
  EXPECT_FALSE(bad.run().ok());
}

TEST(UnaryOps, IntegerTypes) {
  for (DataType t : {DataType::kInt8, DataType::kInt16, DataType::kInt32, DataType::kInt64}) {
    for (const char* op : {"Abs", "Neg", "Sign", "Relu"}) {
      OpCase c(op, 14);
      F1 f = std::string(op) == "Abs"    ? F1([](double x) { return std::fabs(x); })
             : std::string(op) == "Neg"  ? F1([](double x) { return -x; })
             : std::string(op) == "Sign" ? F1([](double x) { return double((x > 0) - (x < 0)); })
                                         : F1([](double x) { return std::max(0.0, x); });
      check_unary(c, t, -100, 100, f, 0);
    }
  }
  {
    OpCase c("Abs", 13);
    check_unary(
        c, DataType::kUInt16, 0, 60000, [](double x) { return x; }, 0);
  }
  // The minimum value negates to itself (two's complement wrap), without UB.
  OpCase c("Neg", 13);
  c.input(make_tensor(DataType::kInt8, {3}, std::vector<double>{-128, 127, -5}));
  expect_case(c, make_tensor(DataType::kInt8, {3}, std::vector<double>{-128, -127, 5}), 0, 0);
}

TEST(UnaryOps, NaNPropagates) {
  for (const char* op : {"Abs", "Relu", "LeakyRelu", "HardSigmoid", "HardSwish", "Sign", "Round", "Celu", "Sigmoid"}) {
    OpCase c(op, 22);
    c.input(make_tensor(DataType::kFloat32, {2}, std::vector<double>{kNaN, -kNaN}));
    SCOPED_TRACE(op);
    expect_case(c, make_tensor(DataType::kFloat32, {2}, std::vector<double>{kNaN, kNaN}), 0, 0);
  }
}

TEST(UnaryOps, BitwiseNotAndNot) {
  {
    OpCase c("BitwiseNot", 18);
    c.input(make_tensor(DataType::kUInt8, {4}, std::vector<double>{0, 1, 200, 255}));
    expect_case(c, make_tensor(DataType::kUInt8, {4}, std::vector<double>{255, 254, 55, 0}), 0, 0);
  }
  {
    OpCase c("BitwiseNot", 18);
    check_unary(
        c, DataType::kInt32, -1000, 1000, [](double x) { return -x - 1; }, 0);
  }
  {
    OpCase c("Not", 1);
    check_unary(
        c, DataType::kBool, 0, 1, [](double x) { return x == 0 ? 1.0 : 0.0; }, 0);
  }
}

TEST(UnaryOps, IsNaNAndIsInf) {
  Tensor x = make_tensor(DataType::kFloat32, {6}, std::vector<double>{-1.7, kNaN, kInf, -3.6, -kInf, kInf});
  auto run = [&](const char* op, int neg, int pos, DataType t) {
    OpCase c(op, 20);
    if (neg >= 0) c.attr("detect_negative", ir::Attribute::from_int(neg));
    if (pos >= 0) c.attr("detect_positive", ir::Attribute::from_int(pos));
    Tensor xt = Tensor::empty(t, {6});
    for (int i = 0; i < 6; ++i) xt.set_from_double(i, x.get_as_double(i));
    c.input(xt);
    auto out = c.run();
    EXPECT_TRUE(out.ok()) << out.status().to_string();
    return out.ok() ? (*out)[0].to_float_vector() : std::vector<float>{};
  };
  for (DataType t : {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16, DataType::kFloat64}) {
    EXPECT_EQ(run("IsNaN", -1, -1, t), (std::vector<float>{0, 1, 0, 0, 0, 0}));
    EXPECT_EQ(run("IsInf", -1, -1, t), (std::vector<float>{0, 0, 1, 0, 1, 1}));
    EXPECT_EQ(run("IsInf", 1, 0, t), (std::vector<float>{0, 0, 0, 0, 1, 0}));
    EXPECT_EQ(run("IsInf", 0, 1, t), (std::vector<float>{0, 0, 1, 0, 0, 1}));
  }
}

TEST(UnaryOps, ClipInputFormEveryNumericType) {
  for (DataType t : {DataType::kFloat32, DataType::kFloat16, DataType::kInt8, DataType::kUInt8, DataType::kInt64,
                     DataType::kFloat64, DataType::kUInt32}) {
    const bool is_unsigned = t == DataType::kUInt8 || t == DataType::kUInt32;
    double lo = is_unsigned ? 20 : -2, hi = is_unsigned ? 80 : 3;
    OpCase c("Clip", 13);
    c.input(t, {4, 5}, is_unsigned ? 0 : -10, is_unsigned ? 100 : 10);
    c.input(make_tensor(t, {}, std::vector<double>{lo})).input(make_tensor(t, {}, std::vector<double>{hi}));
    auto ins = case_inputs(c);
    Tensor want = expected_eltwise(t, {4, 5}, {ins[0]},
                                   [&](const std::vector<double>& v) { return std::min(std::max(v[0], lo), hi); });
    SCOPED_TRACE(dtype_name(t));
    expect_case(c, want, 0, 0);
  }
}

TEST(UnaryOps, ClipOptionalBoundsAndEdgeCases) {
  Tensor x = make_tensor(DataType::kFloat32, {5}, std::vector<double>{-5, -1, 0, 1, kNaN});
  {
    OpCase c("Clip", 13);  // only max
    c.input(x).no_input().input(make_tensor(DataType::kFloat32, {}, std::vector<double>{0.5}));
    expect_case(c, make_tensor(DataType::kFloat32, {5}, std::vector<double>{-5, -1, 0, 0.5, kNaN}), 0, 0);
  }
  {
    OpCase c("Clip", 13);  // min > max: everything becomes max
    c.input(x)
        .input(make_tensor(DataType::kFloat32, {}, std::vector<double>{2}))
        .input(make_tensor(DataType::kFloat32, {}, std::vector<double>{1}));
    expect_case(c, make_tensor(DataType::kFloat32, {5}, std::vector<double>{1, 1, 1, 1, kNaN}), 0, 0);
  }
  {
    OpCase c("Clip", 6);  // attribute form
    c.attr("min", ir::Attribute::from_float(-1.5f)).attr("max", ir::Attribute::from_float(0.5f));
    c.input(x);
    expect_case(c, make_tensor(DataType::kFloat32, {5}, std::vector<double>{-1.5, -1, 0, 0.5, kNaN}), 0, 0);
  }
  {
    OpCase c("Clip", 13);
    c.input(x).input(make_tensor(DataType::kFloat32, {2}, std::vector<double>{0, 1}));
    auto out = c.run();
    ASSERT_FALSE(out.ok());
    EXPECT_NE(out.status().message().find("scalar"), std::string::npos) << out.status().message();
  }
}

TEST(UnaryOps, ShrinkOnIntegers) {
  OpCase c("Shrink", 9);
  c.attr("lambd", ir::Attribute::from_float(1.5f)).attr("bias", ir::Attribute::from_float(1.5f));
  c.input(make_tensor(DataType::kInt32, {5}, std::vector<double>{-3, -1, 0, 2, 5}));
  // -3 + 1.5 = -1.5 -> -1 and 2 - 1.5 = 0.5 -> 0 (truncation toward zero).
  expect_case(c, make_tensor(DataType::kInt32, {5}, std::vector<double>{-1, 0, 0, 0, 3}), 0, 0);
}

TEST(UnaryOps, EmptyAndScalarTensors) {
  {
    OpCase c("Exp", 13);
    c.input(DataType::kFloat32, {0, 3});
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_EQ((*out)[0].dims(), (Dims{0, 3}));
  }
  OpCase c("Sqrt", 13);
  c.input(make_tensor(DataType::kFloat32, {}, std::vector<double>{16}));
  expect_case(c, make_tensor(DataType::kFloat32, {}, std::vector<double>{4}), 0, 0);
}

TEST(UnaryOps, RejectsWrongDtypes) {
  for (auto [op, t] : std::vector<std::pair<const char*, DataType>>{{"Exp", DataType::kInt32},
                                                                    {"Neg", DataType::kUInt8},
                                                                    {"Not", DataType::kFloat32},
                                                                    {"BitwiseNot", DataType::kFloat32},
                                                                    {"IsNaN", DataType::kInt32},
                                                                    {"Sigmoid", DataType::kBool}}) {
    OpCase c(op, 18);
    c.input(t, {2});
    auto out = c.run();
    ASSERT_FALSE(out.ok()) << op;
    EXPECT_EQ(out.status().code(), ErrorCode::kUnsupported) << out.status().to_string();
    EXPECT_NE(out.status().message().find(dtype_name(t)), std::string::npos) << out.status().message();
  }
}

TEST(UnaryOps, InferenceKeepsSymbolicDims) {
  OpCase c("Tanh", 13);
  c.input(DataType::kFloat32, {2, 3});
  ir::Node& n = c.node();
  Shape s{Dim::symbol("batch"), Dim::unknown(), Dim(3)};
  auto r = ops::infer_node(n, {ops::TensorType{DataType::kFloat32, s}}, {nullptr});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_TRUE((*r)[0].shape.has_value());
  EXPECT_EQ(shape_to_string(*(*r)[0].shape), "[batch,?,3]");
  auto unknown_rank = ops::infer_node(n, {ops::TensorType{DataType::kFloat32, std::nullopt}}, {nullptr});
  ASSERT_TRUE(unknown_rank.ok());
  EXPECT_FALSE((*unknown_rank)[0].shape.has_value());
}

// ---- CUDA kernels against the reference (compared when a GPU is present)

// fp32 within a few ulp of the libm result; 16-bit floats within one rounding.
double cuda_rtol(DataType t) { return t == DataType::kFloat32 ? 1e-5 : 1e-2; }
double cuda_atol(DataType t) { return t == DataType::kFloat32 ? 1e-5 : 1e-2; }

const std::vector<DataType>& cuda_float_types() {
  static const std::vector<DataType> k = {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16};
  return k;
}

// Odd sizes (not a multiple of the block or the vector width), a scalar and an empty tensor.
const std::vector<Dims>& cuda_shapes() {
  static const std::vector<Dims> k = {{1, 3, 7, 5}, {1031}, {}, {0, 3}};
  return k;
}

using AttrList = std::vector<std::pair<const char*, ir::Attribute>>;

void check_cuda_unary(const char* op, int opset, double lo, double hi, const AttrList& attrs = {},
                      const char* domain = "") {
  for (DataType t : cuda_float_types())
    for (const Dims& d : cuda_shapes()) {
      OpCase c(op, opset, domain);
      for (auto& [n, a] : attrs) c.attr(n, a);
      c.input(t, d, lo, hi);
      SCOPED_TRACE(std::string(op) + " " + dtype_name(t) + " " + dims_to_string(d));
      expect_kernels_match(c, cuda_rtol(t), cuda_atol(t));
    }
}

TEST(UnaryOps, CudaMathMatchesReference) {
  for (const MathCase& m : math_cases()) check_cuda_unary(m.op, 22, m.lo, m.hi);
  for (const char* op : {"Round", "Floor", "Ceil"}) check_cuda_unary(op, 22, -4, 4);
}

TEST(UnaryOps, CudaActivationsWithAttributes) {
  auto f = [](float v) { return ir::Attribute::from_float(v); };
  check_cuda_unary("LeakyRelu", 16, -5, 5);
  check_cuda_unary("LeakyRelu", 16, -5, 5, {{"alpha", f(0.3f)}});
  check_cuda_unary("Elu", 22, -5, 5, {{"alpha", f(2.0f)}});
  check_cuda_unary("Selu", 22, -5, 5);
  check_cuda_unary("Selu", 22, -5, 5, {{"alpha", f(1.5f)}, {"gamma", f(0.7f)}});
  check_cuda_unary("Celu", 22, -5, 5, {{"alpha", f(2.0f)}});
  check_cuda_unary("HardSigmoid", 22, -5, 5);
  check_cuda_unary("HardSigmoid", 22, -5, 5, {{"alpha", f(0.5f)}, {"beta", f(0.6f)}});
  check_cuda_unary("ThresholdedRelu", 22, -5, 5, {{"alpha", f(1.5f)}});
  check_cuda_unary("Swish", 24, -5, 5, {{"alpha", f(0.5f)}});
  check_cuda_unary("Shrink", 9, -5, 5, {{"lambd", f(1.5f)}, {"bias", f(0.5f)}});
  check_cuda_unary("Gelu", 20, -5, 5);
  check_cuda_unary("Gelu", 20, -5, 5, {{"approximate", ir::Attribute::from_string("tanh")}});
  check_cuda_unary("Gelu", 1, -5, 5, {}, "com.microsoft");
  check_cuda_unary("QuickGelu", 1, -5, 5, {}, "com.microsoft");
  check_cuda_unary("QuickGelu", 1, -5, 5, {{"alpha", f(1.2f)}}, "com.microsoft");
}

TEST(UnaryOps, CudaBiasGelu) {
  for (DataType t : cuda_float_types())
    for (const Dims& d : std::vector<Dims>{{2, 3, 40}, {5, 300}, {7}, {0, 8}}) {
      for (const char* op : {"FastGelu", "BiasGelu"}) {
        OpCase c(op, 1, "com.microsoft");
        c.input(t, d, -4, 4).input(t, {d.back()});
        SCOPED_TRACE(std::string(op) + " " + dtype_name(t) + " " + dims_to_string(d));
        expect_kernels_match(c, cuda_rtol(t), cuda_atol(t));
      }
      OpCase c("FastGelu", 1, "com.microsoft");  // no bias
      c.input(t, d, -4, 4);
      expect_kernels_match(c, cuda_rtol(t), cuda_atol(t));
    }
}

TEST(UnaryOps, CudaIntegerOps) {
  for (const char* op : {"Abs", "Neg", "Sign", "Relu"})
    for (DataType t : {DataType::kInt32, DataType::kInt64})
      for (const Dims& d : cuda_shapes()) {
        OpCase c(op, 22);
        c.input(t, d, -100, 100);
        SCOPED_TRACE(std::string(op) + " " + dtype_name(t) + " " + dims_to_string(d));
        expect_kernels_match(c, 0, 0);
      }
  {  // the two's-complement minimum negates to itself
    OpCase c("Neg", 13);
    c.input(make_tensor(DataType::kInt32, {3}, std::vector<double>{-2147483648.0, 5, -7}));
    expect_kernels_match(c, 0, 0);
  }
  for (DataType t : {DataType::kInt8, DataType::kUInt8, DataType::kInt16, DataType::kUInt16, DataType::kInt32,
                     DataType::kUInt32, DataType::kInt64, DataType::kUInt64}) {
    OpCase c("BitwiseNot", 18);
    c.input(t, {3, 7, 5}, 0, 100);
    SCOPED_TRACE(std::string("BitwiseNot ") + dtype_name(t));
    expect_kernels_match(c, 0, 0);
  }
}

TEST(UnaryOps, CudaClip) {
  for (DataType t : {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16, DataType::kInt32, DataType::kInt64}) {
    SCOPED_TRACE(dtype_name(t));
    auto scalar = [t](double v) { return make_tensor(t, {}, std::vector<double>{v}); };
    for (const Dims& d : cuda_shapes()) {
      OpCase c("Clip", 13);
      c.input(t, d, -10, 10).input(scalar(-2)).input(scalar(3));
      expect_kernels_match(c, 0, 0);
    }
    {
      OpCase c("Clip", 13);  // only max
      c.input(t, {1031}, -10, 10).no_input().input(scalar(4));
      expect_kernels_match(c, 0, 0);
    }
    {
      OpCase c("Clip", 13);  // only min
      c.input(t, {1031}, -10, 10).input(scalar(-4));
      expect_kernels_match(c, 0, 0);
    }
    {
      OpCase c("Clip", 13);  // no bounds: identity (floats: infinities clamp to the largest finite value)
      c.input(t, {2, 5}, -10, 10);
      expect_kernels_match(c, 0, 0);
    }
    {
      OpCase c("Clip", 13);  // min > max gives max
      c.input(t, {17}, -10, 10).input(scalar(2)).input(scalar(1));
      expect_kernels_match(c, 0, 0);
    }
  }
  for (DataType t : cuda_float_types()) {
    OpCase c("Clip", 6);  // attribute form
    c.attr("min", ir::Attribute::from_float(-1.5f)).attr("max", ir::Attribute::from_float(0.5f));
    c.input(t, {3, 7, 5}, -3, 3);
    expect_kernels_match(c, 0, 0);
    OpCase e("Clip", 13);  // infinities and NaN
    e.input(make_tensor(t, {6}, std::vector<double>{-5, -1, 0, kInf, -kInf, kNaN}))
        .input(make_tensor(t, {}, std::vector<double>{-2}));
    expect_kernels_match(e, 0, 0);
  }
}

TEST(UnaryOps, CudaPredicatesAndNot) {
  for (DataType t : cuda_float_types()) {
    Tensor x = make_tensor(t, {7}, std::vector<double>{1, kNaN, -kInf, 0, kInf, -2.5, kNaN});
    for (const char* op : {"IsNaN", "IsInf"}) {
      OpCase c(op, 20);
      c.input(Tensor(x));
      SCOPED_TRACE(std::string(op) + " " + dtype_name(t));
      expect_kernels_match(c, 0, 0);
    }
    for (auto [pos, neg] : std::vector<std::pair<int, int>>{{1, 0}, {0, 1}, {0, 0}}) {
      OpCase c("IsInf", 20);
      c.attr("detect_positive", ir::Attribute::from_int(pos)).attr("detect_negative", ir::Attribute::from_int(neg));
      c.input(Tensor(x));
      expect_kernels_match(c, 0, 0);
    }
    OpCase c("IsNaN", 20);
    c.input(t, {1031});
    expect_kernels_match(c, 0, 0);
  }
  for (const Dims& d : std::vector<Dims>{{1, 3, 7, 5}, {1031}, {}, {0, 3}}) {
    OpCase c("Not", 1);
    c.input(DataType::kBool, d);
    expect_kernels_match(c, 0, 0);
  }
}

}  // namespace
}  // namespace kiln::test

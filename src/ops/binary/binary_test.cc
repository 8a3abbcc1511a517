#include <cmath>
#include <limits>

#include "ops/unary/eltwise_test_util.h"

namespace kiln::test {
namespace {

using F2 = std::function<double(double, double)>;
const double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

bool is_unsigned(DataType t) {
  return t == DataType::kUInt8 || t == DataType::kUInt16 || t == DataType::kUInt32 || t == DataType::kUInt64;
}

// Random a (dims_a) op b (dims_b) against f in double over the broadcast dims.
void check_binary(const char* op, DataType t, const Dims& da, const Dims& db, const F2& f, double lo = -10,
                  double hi = 10, DataType out = DataType::kUndefined, int opset = 18) {
  OpCase c(op, opset);
  c.input(t, da, lo, hi).input(t, db, lo, hi);
  auto ins = case_inputs(c);
  Dims od;
  ASSERT_TRUE(ops::broadcast_dims({da, db}, od));
  Tensor want = expected_eltwise(out == DataType::kUndefined ? t : out, od, ins,
                                 [&](const std::vector<double>& v) { return f(v[0], v[1]); });
  SCOPED_TRACE(std::string(op) + " " + dtype_name(t) + " " + dims_to_string(da) + " vs " + dims_to_string(db));
  expect_case(c, want, rtol_for(t), t == DataType::kFloat16 || t == DataType::kBFloat16 ? 1e-2 : 1e-6);
}

const std::vector<std::pair<Dims, Dims>>& shape_pairs() {
  static const std::vector<std::pair<Dims, Dims>> k = {
      {{3, 4, 5}, {3, 4, 5}},
      {{3, 4, 5}, {5}},
      {{5}, {3, 4, 5}},
      {{3, 4, 5}, {}},
      {{}, {3, 4, 5}},
      {{1, 4, 1, 6}, {3, 1, 5, 6}},
      {{2, 1, 3}, {4, 1}},
      {{3, 4, 5}, {4, 1}},
      {{2, 3, 4, 5}, {1, 3, 1, 1}},
      {{}, {}},
      {{0, 3}, {3}},
  };
  return k;
}

TEST(BinaryOps, ArithmeticBroadcastsOnFloatTypes) {
  const std::vector<std::pair<const char*, F2>> ops = {
      {"Add", [](double a, double b) { return a + b; }},
      {"Sub", [](double a, double b) { return a - b; }},
      {"Mul", [](double a, double b) { return a * b; }},
      {"Div", [](double a, double b) { return a / b; }},
  };
  for (auto& [op, f] : ops)
    for (auto& [da, db] : shape_pairs())
      for (DataType t : {DataType::kFloat32, DataType::kFloat64, DataType::kFloat16, DataType::kBFloat16})
        check_binary(op, t, da, db, f);
}

TEST(BinaryOps, IntegerArithmetic) {
  for (DataType t : {DataType::kInt8, DataType::kUInt8, DataType::kInt16, DataType::kUInt16, DataType::kInt32,
                     DataType::kUInt32, DataType::kInt64, DataType::kUInt64}) {
    const bool u = is_unsigned(t);
    check_binary(
        "Add", t, {3, 4}, {4}, [](double a, double b) { return a + b; }, u ? 0 : -50, 50);
    check_binary(
        "Mul", t, {3, 4}, {3, 1}, [](double a, double b) { return a * b; }, u ? 0 : -10, 10);
    check_binary(
        "Sub", t, {3, 4}, {3, 4}, [](double a, double b) { return a - b; }, u ? 50 : -50, u ? 100 : 50);
  }
}

// Wrap-around and C-style truncating division, on hand-picked values.
TEST(BinaryOps, IntegerEdgeCases) {
  auto run = [](const char* op, DataType t, std::vector<double> a, std::vector<double> b, std::vector<double> want,
                int64_t fmod = -1) {
    OpCase c(op, 14);
    if (fmod >= 0) c.attr("fmod", ir::Attribute::from_int(fmod));
    Dims d{static_cast<int64_t>(a.size())};
    c.input(make_tensor(t, d, a)).input(make_tensor(t, d, b));
    SCOPED_TRACE(op);
    expect_case(c, make_tensor(t, d, want), 0, 0);
  };
  run("Add", DataType::kInt8, {127, -128, 100}, {1, -1, 100}, {-128, 127, -56});
  run("Mul", DataType::kUInt16, {65535, 300}, {65535, 300}, {1, 24464});
  run("Div", DataType::kInt32, {-3, 3, -3, 3, 7, -2147483648.0}, {2, 2, -2, -2, 0, -1},
      {-1, 1, 1, -1, 0, -2147483648.0});
  run("Div", DataType::kUInt8, {200, 7}, {3, 0}, {66, 0});
  run("Mod", DataType::kInt32, {-4, 7, 5, 4, -7, 8, 3}, {3, -3, 8, -3, 3, 0, -1}, {2, -2, 5, -2, 2, 0, 0});
  run("Mod", DataType::kInt64, {-4, 7, 5, 4, -7, 8}, {3, -3, 8, -3, 3, 5}, {-1, 1, 5, 1, -1, 3}, 1);
  run("Mod", DataType::kUInt8, {200, 9}, {7, 0}, {4, 0});
}

TEST(BinaryOps, FloatModBothSemantics) {
  std::vector<double> a{-4.3, 7.2, 5, 4.3, -7.2, 8, 0, -3, 1, kInf, 1};
  std::vector<double> b{2.1, -3.4, 8, -2.1, 3.4, 5, -2, kInf, -kInf, 2, 0};
  for (DataType t : {DataType::kFloat32, DataType::kFloat64, DataType::kFloat16}) {
    for (int64_t fm : {0, 1}) {
      OpCase c("Mod", 13);
      c.attr("fmod", ir::Attribute::from_int(fm));
      Dims d{static_cast<int64_t>(a.size())};
      c.input(make_tensor(t, d, a)).input(make_tensor(t, d, b));
      auto ins = case_inputs(c);
      Tensor want = expected_eltwise(t, d, ins, [fm](const std::vector<double>& v) {
        double r = std::fmod(v[0], v[1]);
        if (fm == 1) return r;
        if (r == 0) return std::copysign(0.0, v[1]);
        return (r < 0) != (v[1] < 0) ? r + v[1] : r;
      });
      SCOPED_TRACE(std::string(dtype_name(t)) + " fmod=" + std::to_string(fm));
      expect_case(c, want, rtol_for(t), 1e-3);
    }
  }
}

TEST(BinaryOps, PowMixedDtypes) {
  auto run = [](DataType ta, std::vector<double> a, DataType tb, std::vector<double> b, std::vector<double> want) {
    OpCase c("Pow", 15);
    Dims d{static_cast<int64_t>(a.size())};
    c.input(make_tensor(ta, d, a)).input(make_tensor(tb, d, b));
    SCOPED_TRACE(std::string(dtype_name(ta)) + " ** " + dtype_name(tb));
    expect_case(c, make_tensor(ta, d, want), 1e-6, 0);
  };
  run(DataType::kFloat32, {1, 2, 3}, DataType::kInt32, {4, 5, 6}, {1, 32, 729});
  run(DataType::kFloat32, {2, 4, 0.5}, DataType::kUInt64, {3, 0, 2}, {8, 1, 0.25});
  run(DataType::kInt32, {1, 2, 3}, DataType::kFloat32, {4, 5, 6}, {1, 32, 729});
  run(DataType::kInt64, {2, 9, 10}, DataType::kFloat32, {0.5, 0.5, -1}, {1, 3, 0});
  run(DataType::kInt64, {3, -2, 2, -1, 1}, DataType::kInt64, {20, 3, -1, -3, -5}, {3486784401.0, -8, 0, -1, 1});
  run(DataType::kInt8, {2, 3}, DataType::kInt32, {7, 5}, {-128, -13});  // wraps like numpy
  // Random floats with broadcasting.
  check_binary(
      "Pow", DataType::kFloat32, {3, 4}, {4}, [](double a, double b) { return std::pow(a, b); }, 0.1, 3);
  check_binary(
      "Pow", DataType::kFloat16, {3, 4}, {}, [](double a, double b) { return std::pow(a, b); }, 0.1, 3);
}

TEST(BinaryOps, ComparisonsAndLogic) {
  const std::vector<std::pair<const char*, F2>> cmp = {
      {"Equal", [](double a, double b) { return double(a == b); }},
      {"Less", [](double a, double b) { return double(a < b); }},
      {"LessOrEqual", [](double a, double b) { return double(a <= b); }},
      {"Greater", [](double a, double b) { return double(a > b); }},
      {"GreaterOrEqual", [](double a, double b) { return double(a >= b); }},
  };
  for (auto& [op, f] : cmp)
    for (DataType t : {DataType::kFloat32, DataType::kFloat16, DataType::kInt8, DataType::kUInt64, DataType::kInt64})
      for (auto& [da, db] : shape_pairs())
        // Small integer range so equality happens often.
        check_binary(op, t, da, db, f, t == DataType::kUInt64 ? 0 : -3, 3, DataType::kBool);
  check_binary(
      "Equal", DataType::kBool, {3, 4}, {4}, [](double a, double b) { return double(a == b); }, 0, 1);
  const std::vector<std::pair<const char*, F2>> logic = {
      {"And", [](double a, double b) { return double(a && b); }},
      {"Or", [](double a, double b) { return double(a || b); }},
      {"Xor", [](double a, double b) { return double((a != 0) != (b != 0)); }},
  };
  for (auto& [op, f] : logic)
    for (auto& [da, db] : shape_pairs()) check_binary(op, DataType::kBool, da, db, f, 0, 1, DataType::kBool, 7);
}

TEST(BinaryOps, NaNComparesFalse) {
  OpCase c("Equal", 19);
  c.input(make_tensor(DataType::kFloat16, {2}, std::vector<double>{kNaN, 1}))
      .input(make_tensor(DataType::kFloat16, {2}, std::vector<double>{kNaN, 1}));
  expect_case(c, make_tensor(DataType::kBool, {2}, std::vector<double>{0, 1}), 0, 0);
}

TEST(BinaryOps, BitwiseAndShift) {
  auto bits = [](const char* op, DataType t, std::vector<double> a, std::vector<double> b, std::vector<double> want,
                 const char* dir = nullptr) {
    OpCase c(op, 18);
    if (dir) c.attr("direction", ir::Attribute::from_string(dir));
    Dims d{static_cast<int64_t>(a.size())};
    c.input(make_tensor(t, d, a)).input(make_tensor(t, d, b));
    SCOPED_TRACE(std::string(op) + " " + dtype_name(t));
    expect_case(c, make_tensor(t, d, want), 0, 0);
  };
  bits("BitwiseAnd", DataType::kUInt8, {0xF0, 0xFF, 3}, {0x3C, 0x0F, 5}, {0x30, 0x0F, 1});
  bits("BitwiseOr", DataType::kInt16, {-2, 8, 3}, {1, 4, 5}, {-1, 12, 7});
  bits("BitwiseXor", DataType::kInt64, {-1, 6, 3}, {0, 3, 5}, {-1, 5, 6});
  bits("BitShift", DataType::kUInt8, {16, 4, 1}, {1, 2, 3}, {32, 16, 8}, "LEFT");
  bits("BitShift", DataType::kUInt64, {16, 4, 1}, {1, 2, 64}, {8, 1, 0}, "RIGHT");
  bits("BitShift", DataType::kInt8, {64, 1, -64}, {1, 7, 1}, {-128, -128, -128}, "LEFT");
  bits("BitShift", DataType::kInt8, {-8, 4, -1}, {-1, -8, -16}, {-1, 0, -1}, "RIGHT");
  bits("BitShift", DataType::kInt32, {-8, 8, 5}, {2, 32, -1}, {-2, 0, 0}, "RIGHT");
  bits("BitShift", DataType::kInt32, {1, 1, 3}, {31, 32, -1}, {-2147483648.0, 0, 0}, "LEFT");
  for (DataType t : {DataType::kUInt16, DataType::kInt32})
    check_binary(
        "BitwiseXor", t, {3, 4}, {4},
        [](double a, double b) { return double(static_cast<int64_t>(a) ^ static_cast<int64_t>(b)); }, 0, 1000);
}

TEST(BinaryOps, PReluBroadcastsSlope) {
  for (auto [dx, ds] : std::vector<std::pair<Dims, Dims>>{{{3, 4, 5}, {5}}, {{2, 3, 4}, {3, 1}}, {{3, 4}, {3, 4}}})
    for (DataType t : {DataType::kFloat32, DataType::kFloat16, DataType::kInt32})
      check_binary(
          "PRelu", t, dx, ds, [](double x, double s) { return x < 0 ? s * x : x; }, -5, 5, DataType::kUndefined, 16);
}

TEST(BinaryOps, VariadicMaxMinSumMean) {
  struct V {
    const char* op;
    std::function<double(const std::vector<double>&)> f;
  };
  std::vector<V> ops = {
      {"Max", [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }},
      {"Min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }},
      {"Sum",
       [](const std::vector<double>& v) {
         double s = 0;
         for (double x : v) s += x;
         return s;
       }},
      {"Mean",
       [](const std::vector<double>& v) {
         double s = 0;
         for (double x : v) s += x;
         return s / v.size();
       }},
  };
  const std::vector<std::vector<Dims>> shapes = {
      {{3, 4}}, {{3, 4}, {3, 4}}, {{3, 1, 5}, {4, 1}, {5}}, {{2, 3}, {}, {1, 3}, {2, 1}}};
  for (auto& v : ops)
    for (auto& dims : shapes)
      for (DataType t :
           {DataType::kFloat32, DataType::kFloat64, DataType::kFloat16, DataType::kInt32, DataType::kUInt8}) {
        if (std::string(v.op) == "Mean" && !dtype_is_float(t)) continue;
        OpCase c(v.op, 13);
        for (auto& d : dims) c.input(t, d, t == DataType::kUInt8 ? 0 : -10, 10);
        auto ins = case_inputs(c);
        std::vector<Dims> all(dims.begin(), dims.end());
        Dims od;
        ASSERT_TRUE(ops::broadcast_dims(all, od));
        Tensor want = expected_eltwise(t, od, ins, v.f);
        SCOPED_TRACE(std::string(v.op) + " " + dtype_name(t) + " x" + std::to_string(dims.size()));
        expect_case(c, want, 2 * rtol_for(t), t == DataType::kFloat16 ? 2e-2 : 1e-6);
      }
}

TEST(BinaryOps, MaxMinPropagateNaN) {
  for (const char* op : {"Max", "Min"}) {
    OpCase c(op, 13);
    c.input(make_tensor(DataType::kFloat32, {3}, std::vector<double>{kNaN, 1, 2}))
        .input(make_tensor(DataType::kFloat32, {3}, std::vector<double>{0, kNaN, 3}));
    double m = std::string(op) == "Max" ? 3 : 2;
    expect_case(c, make_tensor(DataType::kFloat32, {3}, std::vector<double>{kNaN, kNaN, m}), 0, 0);
  }
}

TEST(BinaryOps, ErrorsNameTheProblem) {
  {
    OpCase c("Add", 14);
    c.input(DataType::kFloat32, {3, 4}).input(DataType::kFloat32, {5});
    auto out = c.run();
    ASSERT_FALSE(out.ok());
    EXPECT_NE(out.status().message().find("broadcast"), std::string::npos) << out.status().message();
    EXPECT_NE(out.status().message().find("[3,4]"), std::string::npos) << out.status().message();
  }
  {
    OpCase c("Mul", 14);
    c.input(DataType::kFloat32, {3}).input(DataType::kInt32, {3});
    EXPECT_FALSE(c.run().ok());
  }
  {
    OpCase c("Sum", 13);
    c.input(DataType::kFloat32, {2, 3}).input(DataType::kFloat32, {3, 3});
    EXPECT_FALSE(c.run().ok());
  }
  for (auto [op, t] : std::vector<std::pair<const char*, DataType>>{{"Add", DataType::kBool},
                                                                    {"And", DataType::kInt32},
                                                                    {"BitwiseAnd", DataType::kFloat32},
                                                                    {"Less", DataType::kBool},
                                                                    {"Mean", DataType::kInt32}}) {
    OpCase c(op, 18);
    c.input(t, {2}).input(t, {2});
    auto out = c.run();
    ASSERT_FALSE(out.ok()) << op;
    EXPECT_EQ(out.status().code(), ErrorCode::kUnsupported) << out.status().to_string();
  }
  {
    OpCase c("BitShift", 11);
    c.attr("direction", ir::Attribute::from_string("UP"));
    c.input(DataType::kUInt8, {2}).input(DataType::kUInt8, {2});
    EXPECT_FALSE(c.run().ok());
  }
  {
    OpCase c("Add", 6);
    c.attr("broadcast", ir::Attribute::from_int(1));
    c.input(DataType::kFloat32, {2, 3}).input(DataType::kFloat32, {3});
    auto out = c.run();
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), ErrorCode::kUnsupported);
  }
}

TEST(BinaryOps, InferenceWithSymbolicDims) {
  OpCase c("Add", 14);
  c.input(DataType::kFloat32, {2, 3}).input(DataType::kFloat32, {3});
  ir::Node& n = c.node();
  auto r = ops::infer_node(n,
                           {ops::TensorType{DataType::kFloat32, Shape{Dim::symbol("N"), Dim(1), Dim(3)}},
                            ops::TensorType{DataType::kFloat32, Shape{Dim(4), Dim(3)}}},
                           {nullptr, nullptr});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(shape_to_string(*(*r)[0].shape), "[N,4,3]");
  auto u = ops::infer_node(
      n, {ops::TensorType{DataType::kFloat32, std::nullopt}, ops::TensorType{DataType::kFloat32, Shape{Dim(3)}}},
      {nullptr, nullptr});
  ASSERT_TRUE(u.ok());
  EXPECT_FALSE((*u)[0].shape.has_value());
}

// ---- CUDA kernels against the reference (compared when a GPU is present)

using AttrList = std::vector<std::pair<const char*, ir::Attribute>>;

double cuda_rtol(DataType t) { return t == DataType::kFloat16 || t == DataType::kBFloat16 ? 1e-2 : 1e-6; }
double cuda_atol(DataType t) { return t == DataType::kFloat16 || t == DataType::kBFloat16 ? 1e-2 : 1e-6; }

// Each kernel path: same shape (vectorised, with an odd tail), scalar operands,
// bias along rows / columns (2-D), general broadcasting, rank 0 and empty.
const std::vector<std::pair<Dims, Dims>>& cuda_shape_pairs() {
  static const std::vector<std::pair<Dims, Dims>> k = {
      {{3, 7, 5}, {3, 7, 5}},
      {{1031}, {1031}},
      {{2, 3, 4, 5}, {3, 1, 5}},
      {{1}, {2, 3}},
      {{2, 3}, {1}},
      {{}, {2, 3}},
      {{1031}, {}},
      {{7, 64}, {64}},
      {{64, 40}, {64, 1}},
      {{2, 3, 4, 5}, {1, 3, 1, 1}},
      {{4, 1, 6}, {1, 5, 1}},
      {{}, {}},
      {{0, 3}, {3}},
      {{2, 1, 2, 1, 2, 1, 3, 2}, {2, 1, 3, 1}},
  };
  return k;
}

void check_cuda_binary(const char* op, DataType t, double lo, double hi, const AttrList& attrs = {}, int opset = 18,
                       DataType tb = DataType::kUndefined, double lo_b = 0, double hi_b = 0) {
  if (tb == DataType::kUndefined) tb = t, lo_b = lo, hi_b = hi;
  for (auto& [da, db] : cuda_shape_pairs()) {
    OpCase c(op, opset);
    for (auto& [n, a] : attrs) c.attr(n, a);
    c.input(t, da, lo, hi).input(tb, db, lo_b, hi_b);
    SCOPED_TRACE(std::string(op) + " " + dtype_name(t) + " " + dtype_name(tb) + " " + dims_to_string(da) + " vs " +
                 dims_to_string(db));
    expect_kernels_match(c, cuda_rtol(t), cuda_atol(t));
  }
}

const std::vector<DataType> kCudaArith = {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16, DataType::kInt32,
                                          DataType::kInt64};

TEST(BinaryOps, CudaArithmetic) {
  for (DataType t : kCudaArith) {
    for (const char* op : {"Add", "Sub", "Mul", "Div", "PRelu"}) check_cuda_binary(op, t, -10, 10);
    for (int fmod : {0, 1}) check_cuda_binary("Mod", t, -10, 10, {{"fmod", ir::Attribute::from_int(fmod)}});
  }
  // Integer edge cases: x / 0, MIN / -1, MIN % -1.
  for (const char* op : {"Div", "Mod"}) {
    OpCase c(op, 18);
    c.input(make_tensor(DataType::kInt32, {4}, std::vector<double>{7, -2147483648.0, -2147483648.0, -7}))
        .input(make_tensor(DataType::kInt32, {4}, std::vector<double>{0, -1, 3, 2}));
    expect_kernels_match(c, 0, 0);
  }
}

TEST(BinaryOps, CudaPow) {
  for (DataType t : {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16})
    for (DataType e : kCudaArith) check_cuda_binary("Pow", t, 0.1, 3, {}, 15, e, -2, 2);
  for (DataType t : {DataType::kInt32, DataType::kInt64}) {
    for (DataType e : {DataType::kInt32, DataType::kInt64}) check_cuda_binary("Pow", t, -3, 3, {}, 15, e, -2, 6);
    check_cuda_binary("Pow", t, 0, 5, {}, 15, DataType::kFloat32, -1, 3);
  }
}

TEST(BinaryOps, CudaComparisonsAndLogic) {
  for (DataType t : kCudaArith)
    for (const char* op : {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"})
      check_cuda_binary(op, t, -3, 3);  // narrow range: ties occur for the integers
  check_cuda_binary("Equal", DataType::kBool, 0, 1);
  for (const char* op : {"And", "Or", "Xor"}) check_cuda_binary(op, DataType::kBool, 0, 1);
  {  // NaN compares false
    OpCase c("Equal", 18);
    c.input(make_tensor(DataType::kFloat32, {3}, std::vector<double>{kNaN, 1, kInf}))
        .input(make_tensor(DataType::kFloat32, {3}, std::vector<double>{kNaN, 1, kInf}));
    expect_kernels_match(c, 0, 0);
  }
}

TEST(BinaryOps, CudaBitwise) {
  for (DataType t : {DataType::kInt8, DataType::kUInt8, DataType::kInt16, DataType::kUInt16, DataType::kInt32,
                     DataType::kUInt32, DataType::kInt64, DataType::kUInt64}) {
    const double lo = is_unsigned(t) ? 0 : -100;
    for (const char* op : {"BitwiseAnd", "BitwiseOr", "BitwiseXor"}) check_cuda_binary(op, t, lo, 100);
    for (const char* dir : {"LEFT", "RIGHT"}) {
      OpCase c("BitShift", 11);
      c.attr("direction", ir::Attribute::from_string(dir));
      c.input(t, {3, 7, 5}, lo, 100).input(t, {7, 1}, is_unsigned(t) ? 0 : -2, 70);
      SCOPED_TRACE(std::string("BitShift ") + dir + " " + dtype_name(t));
      expect_kernels_match(c, 0, 0);
    }
  }
}

TEST(BinaryOps, CudaVariadic) {
  const std::vector<std::vector<Dims>> shapes = {
      {{3, 7, 5}},
      {{3, 7, 5}, {3, 7, 5}},
      {{2, 3, 4, 5}, {3, 1, 5}, {5}},
      {{1031}, {}, {1031}, {1}},
      {{4, 1, 6}, {1, 5, 1}, {6}, {4, 5, 6}, {}, {1, 1, 1}, {5, 6}, {4, 1, 1}},
      {{}, {}},
      {{0, 3}, {3}, {1, 3}},
  };
  for (const char* op : {"Max", "Min", "Sum", "Mean"})
    for (DataType t : kCudaArith) {
      if (std::string(op) == "Mean" && !dtype_is_float(t)) continue;
      for (const auto& s : shapes) {
        OpCase c(op, 13);
        for (const Dims& d : s) c.input(t, d, -10, 10);
        SCOPED_TRACE(std::string(op) + " " + dtype_name(t) + " " + std::to_string(s.size()) + " inputs, first " +
                     dims_to_string(s[0]));
        expect_kernels_match(c, cuda_rtol(t), cuda_atol(t));
      }
    }
  for (const char* op : {"Max", "Min"}) {  // NaN propagates
    OpCase c(op, 13);
    c.input(make_tensor(DataType::kFloat32, {3}, std::vector<double>{kNaN, 1, 2}))
        .input(make_tensor(DataType::kFloat32, {3}, std::vector<double>{0, kNaN, 3}));
    expect_kernels_match(c, 0, 0);
  }
}

}  // namespace
}  // namespace kiln::test

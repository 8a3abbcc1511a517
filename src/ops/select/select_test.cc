#include <cmath>
#include <limits>

#include "ops/unary/eltwise_test_util.h"

namespace kiln::test {
namespace {

const double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

const std::vector<DataType>& all_types() {
  static const std::vector<DataType> k = {
      DataType::kFloat32, DataType::kFloat64, DataType::kFloat16, DataType::kBFloat16, DataType::kInt8,
      DataType::kUInt8,   DataType::kInt16,   DataType::kUInt16,  DataType::kInt32,    DataType::kUInt32,
      DataType::kInt64,   DataType::kUInt64,  DataType::kBool};
  return k;
}

bool is_unsigned(DataType t) {
  return t == DataType::kUInt8 || t == DataType::kUInt16 || t == DataType::kUInt32 || t == DataType::kUInt64;
}

TEST(SelectOps, WhereBroadcastsThreeWays) {
  const std::vector<std::vector<Dims>> shapes = {{{3, 4}, {3, 4}, {3, 4}}, {{4}, {3, 4}, {}},
                                                 {{3, 1}, {1, 4}, {4}},    {{2, 1, 3}, {4, 1}, {2, 4, 3}},
                                                 {{}, {2, 3}, {2, 3}},     {{0, 2}, {2}, {}}};
  for (auto& s : shapes)
    for (DataType t : {DataType::kFloat32, DataType::kInt64, DataType::kFloat16, DataType::kInt8, DataType::kBool}) {
      OpCase c("Where", 16);
      c.input(DataType::kBool, s[0]).input(t, s[1], -50, 50).input(t, s[2], -50, 50);
      auto ins = case_inputs(c);
      Dims od;
      ASSERT_TRUE(ops::broadcast_dims({s[0], s[1], s[2]}, od));
      Tensor want = expected_eltwise(t, od, ins, [](const std::vector<double>& v) { return v[0] != 0 ? v[1] : v[2]; });
      SCOPED_TRACE(std::string(dtype_name(t)) + " " + dims_to_string(s[0]) + " " + dims_to_string(s[1]) + " " +
                   dims_to_string(s[2]));
      expect_case(c, want, 0, 0);
    }
}

TEST(SelectOps, WhereRejectsBadInputs) {
  {
    OpCase c("Where", 16);
    c.input(DataType::kFloat32, {2}).input(DataType::kFloat32, {2}).input(DataType::kFloat32, {2});
    EXPECT_FALSE(c.run().ok());
  }
  {
    OpCase c("Where", 16);
    c.input(DataType::kBool, {2}).input(DataType::kFloat32, {2}).input(DataType::kInt32, {2});
    EXPECT_FALSE(c.run().ok());
  }
  {
    OpCase c("Where", 16);
    c.input(DataType::kBool, {3}).input(DataType::kFloat32, {2}).input(DataType::kFloat32, {2});
    auto out = c.run();
    ASSERT_FALSE(out.ok());
    EXPECT_NE(out.status().message().find("broadcast"), std::string::npos);
  }
}

// Every pair of dtypes on values every type can hold; the oracle truncates in double.
TEST(SelectOps, CastEveryDtypePair) {
  for (DataType from : all_types())
    for (DataType to : all_types()) {
      OpCase c("Cast", 21);
      c.attr("to", ir::Attribute::from_int(static_cast<int64_t>(to)));
      bool non_negative = is_unsigned(from) || is_unsigned(to);
      c.input(from, {4, 6}, non_negative ? 0 : -100, 100);
      auto ins = case_inputs(c);
      Tensor want = expected_eltwise(to, {4, 6}, ins, [to](const std::vector<double>& v) {
        if (to == DataType::kBool) return v[0] != 0 ? 1.0 : 0.0;
        return dtype_is_float(to) ? v[0] : std::trunc(v[0]);
      });
      SCOPED_TRACE(std::string(dtype_name(from)) + " -> " + dtype_name(to));
      expect_case(c, want, 0, 0);
    }
}

TEST(SelectOps, CastFloatEdgeCases) {
  auto run = [](DataType from, std::vector<double> x, DataType to, std::vector<double> want) {
    OpCase c("Cast", 13);
    c.attr("to", ir::Attribute::from_int(static_cast<int64_t>(to)));
    Dims d{static_cast<int64_t>(x.size())};
    c.input(make_tensor(from, d, x));
    SCOPED_TRACE(std::string(dtype_name(from)) + " -> " + dtype_name(to));
    expect_case(c, make_tensor(to, d, want), 0, 0);
  };
  // Truncation toward zero; NaN -> 0 and saturation out of range (kiln's choice, the spec leaves it open).
  run(DataType::kFloat32, {-2.7, 2.7, -0.5, kNaN, 1e10, -1e10}, DataType::kInt32,
      {-2, 2, 0, 0, 2147483647.0, -2147483648.0});
  run(DataType::kFloat64, {300, -1, 255.9}, DataType::kUInt8, {255, 0, 255});
  run(DataType::kFloat32, {0, -0.5, kNaN, 3}, DataType::kBool, {0, 1, 1, 1});
  run(DataType::kBool, {1, 0}, DataType::kFloat16, {1, 0});
  run(DataType::kInt32, {-1, 256}, DataType::kUInt8, {255, 0});  // integer narrowing wraps
  run(DataType::kFloat64, {1e6, -kInf}, DataType::kFloat16, {kInf, -kInf});
  // Just above the midpoint of two halves: rounding via float would tie to even (1.0).
  run(DataType::kFloat64, {1.00048828125 + 1e-12}, DataType::kFloat16, {1.0009765625});
}

TEST(SelectOps, CastRejectsUnsupportedTypes) {
  for (int64_t to : {8, 14, 27, 28, 99}) {
    OpCase c("Cast", 21);
    c.attr("to", ir::Attribute::from_int(to));
    c.input(DataType::kFloat32, {2});
    auto out = c.run();
    ASSERT_FALSE(out.ok()) << to;
    EXPECT_EQ(out.status().code(), ErrorCode::kUnsupported) << out.status().to_string();
  }
  OpCase c("Cast", 21);
  c.input(DataType::kFloat32, {2});
  EXPECT_FALSE(c.run().ok());  // no `to`
}

TEST(SelectOps, CastLikeTakesDtypeOfSecondInput) {
  OpCase c("CastLike", 15);
  c.input(make_tensor(DataType::kFloat32, {3}, std::vector<double>{-1.5, 0.25, 7.9}));
  c.input(Tensor::empty(DataType::kInt16, {0}));
  expect_case(c, make_tensor(DataType::kInt16, {3}, std::vector<double>{-1, 0, 7}), 0, 0);
}

TEST(SelectOps, CastLikeWaitsForAnUnknownTargetDtype) {
  OpCase c("CastLike", 15);
  c.input(DataType::kFloat32, {3}).input(DataType::kInt16, {0});
  auto r = ops::infer_node(c.node(),
                           {ops::TensorType{DataType::kFloat32, Shape{Dim::symbol("n")}},
                            ops::TensorType{DataType::kUndefined, std::nullopt}},
                           {nullptr, nullptr});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ((*r)[0].dtype, DataType::kUndefined);
  EXPECT_EQ(shape_to_string(*(*r)[0].shape), "[n]");
}

TEST(SelectOps, DropoutIsIdentityAtInference) {
  for (int opset : {7, 10, 13}) {
    OpCase c("Dropout", opset);
    if (opset < 12) c.attr("ratio", ir::Attribute::from_float(0.3f));
    c.input(DataType::kFloat32, {3, 4}).outputs(2);
    auto x = *c.inputs()[0];
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_TRUE(tensors_close((*out)[0], x, 0, 0));
    DataType mask_type = opset >= 10 ? DataType::kBool : DataType::kFloat32;
    Tensor ones = expected_eltwise(mask_type, {3, 4}, {x}, [](const std::vector<double>&) { return 1.0; });
    EXPECT_TRUE(tensors_close((*out)[1], ones, 0, 0)) << "opset " << opset;
  }
}

TEST(SelectOps, DropoutTrainingModeOnlyWithZeroRatio) {
  auto make = [](double ratio, bool training) {
    auto c = std::make_unique<OpCase>("Dropout", 13);
    c->input(DataType::kFloat32, {3, 4})
        .input(make_tensor(DataType::kFloat32, {}, std::vector<double>{ratio}))
        .input(make_tensor(DataType::kBool, {}, std::vector<double>{training ? 1.0 : 0.0}))
        .outputs(2);
    return c;
  };
  {
    auto c = make(0.0, true);
    auto x = *c->inputs()[0];
    auto out = c->run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_TRUE(tensors_close((*out)[0], x, 0, 0));
  }
  {
    auto c = make(0.5, false);
    EXPECT_TRUE(c->run().ok());
  }
  {
    auto c = make(0.5, true);
    auto out = c->run();
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), ErrorCode::kUnsupported);
  }
  {
    // At build time with the values unknown, inference succeeds; known training mode is rejected early.
    auto c = make(0.5, true);
    std::vector<ops::TensorType> types = {
        {DataType::kFloat32, Shape{Dim(3), Dim(4)}}, {DataType::kFloat32, Shape{}}, {DataType::kBool, Shape{}}};
    EXPECT_TRUE(ops::infer_node(c->node(), types, {nullptr, nullptr, nullptr}).ok());
    Tensor on = make_tensor(DataType::kBool, {}, std::vector<double>{1});
    Tensor ratio = make_tensor(DataType::kFloat32, {}, std::vector<double>{0.5});
    EXPECT_TRUE(ops::infer_node(c->node(), types, {nullptr, nullptr, &on}).ok());  // ratio not known yet
    EXPECT_FALSE(ops::infer_node(c->node(), types, {nullptr, &ratio, &on}).ok());
  }
}

// ---- CUDA kernels against the reference (compared when a GPU is present)

const std::vector<DataType>& cuda_cast_types() {
  static const std::vector<DataType> k = {
      DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16, DataType::kFloat64, DataType::kInt8,
      DataType::kUInt8,   DataType::kInt16,   DataType::kInt32,    DataType::kInt64,   DataType::kBool};
  return k;
}

TEST(SelectOps, CudaCastEveryDtypePair) {
  for (DataType from : cuda_cast_types())
    for (DataType to : cuda_cast_types())
      for (const Dims& d : std::vector<Dims>{{3, 7, 5}, {1031}, {}, {0, 2}}) {
        OpCase c("Cast", 21);
        c.attr("to", ir::Attribute::from_int(static_cast<int64_t>(to)));
        // Beyond int8/uint8 range so float -> int saturation and int -> int wrapping are exercised.
        c.input(from, d, -300.7, 300.7);
        SCOPED_TRACE(std::string(dtype_name(from)) + " -> " + dtype_name(to) + " " + dims_to_string(d));
        expect_kernels_match(c, 0, 0);
      }
}

TEST(SelectOps, CudaCastEdgeCases) {
  const std::vector<double> x = {-2.7, 2.7, -0.5, kNaN, 1e10, -1e10, kInf, -kInf, 0, 65519, 65520, 1e-8};
  for (DataType from : {DataType::kFloat32, DataType::kFloat64})
    for (DataType to : cuda_cast_types()) {
      OpCase c("Cast", 13);
      c.attr("to", ir::Attribute::from_int(static_cast<int64_t>(to)));
      c.input(make_tensor(from, {static_cast<int64_t>(x.size())}, x));
      SCOPED_TRACE(std::string(dtype_name(from)) + " -> " + dtype_name(to));
      expect_kernels_match(c, 0, 0);
    }
  // double -> 16-bit floats must round once (just above a half-way point).
  for (DataType to : {DataType::kFloat16, DataType::kBFloat16}) {
    OpCase c("Cast", 13);
    c.attr("to", ir::Attribute::from_int(static_cast<int64_t>(to)));
    c.input(make_tensor(DataType::kFloat64, {3}, std::vector<double>{1.00048828125 + 1e-12, 1.00390625 + 1e-12, -3}));
    expect_kernels_match(c, 0, 0);
  }
  {  // int64 -> half types goes through double as in the reference
    OpCase c("Cast", 13);
    c.attr("to", ir::Attribute::from_int(static_cast<int64_t>(DataType::kBFloat16)));
    c.input(make_tensor(DataType::kInt64, {3}, std::vector<double>{16777217, -33554435, 123456789}));
    expect_kernels_match(c, 0, 0);
  }
  {
    OpCase c("CastLike", 15);
    c.input(DataType::kFloat32, {3, 7, 5}, -50, 50).input(Tensor::empty(DataType::kInt16, {0}));
    expect_kernels_match(c, 0, 0);
  }
  {
    OpCase c("CastLike", 15);
    c.input(DataType::kBFloat16, {1031}, -50, 50).input(Tensor::empty(DataType::kFloat16, {1}));
    expect_kernels_match(c, 0, 0);
  }
}

TEST(SelectOps, CudaWhereBroadcasts) {
  const std::vector<std::vector<Dims>> shapes = {
      {{3, 7, 5}, {3, 7, 5}, {3, 7, 5}},
      {{1031}, {1031}, {}},
      {{3, 1, 5}, {2, 3, 4, 5}, {4, 1}},
      {{2, 3}, {1}, {2, 3}},
      {{}, {2, 3}, {}},
      {{3, 1}, {1, 4}, {4}},
      {{}, {}, {}},
      {{0, 2}, {2}, {}},
      {{2, 1, 2, 1, 2, 1, 2, 3}, {1, 2, 1, 3}, {3}},
  };
  for (auto& s : shapes)
    for (DataType t : {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16, DataType::kInt64, DataType::kInt8,
                       DataType::kBool, DataType::kFloat64}) {
      OpCase c("Where", 16);
      c.input(DataType::kBool, s[0]).input(t, s[1], -50, 50).input(t, s[2], -50, 50);
      SCOPED_TRACE(std::string(dtype_name(t)) + " " + dims_to_string(s[0]) + " " + dims_to_string(s[1]) + " " +
                   dims_to_string(s[2]));
      expect_kernels_match(c, 0, 0);
    }
}

// kiln WhereNonzero: the condition of any integer or bool dtype is read as "!= 0" (a
// Where over its Cast to bool); random conditions in [-2, 2] give zeros and nonzeros of
// both signs. The CUDA kernel (one per condition element size) against the reference.
TEST(SelectOps, WhereNonzeroReadsAnyIntegerConditionAsNonzero) {
  const std::vector<std::vector<Dims>> shapes = {
      {{3, 4}, {3, 4}, {3, 4}}, {{2, 1, 1, 5}, {}, {1}}, {{3, 1}, {1, 4}, {4}}, {{}, {2, 3}, {2, 3}}};
  for (DataType ct : {DataType::kInt64, DataType::kInt32, DataType::kInt8, DataType::kUInt8, DataType::kUInt16,
                      DataType::kUInt64, DataType::kBool})
    for (DataType t : {DataType::kFloat32, DataType::kFloat16, DataType::kInt64})
      for (auto& s : shapes) {
        OpCase c("WhereNonzero", 1, "kiln");
        c.input(ct, s[0], -2, 2).input(t, s[1], -50, 50).input(t, s[2], -50, 50);
        auto ins = case_inputs(c);
        Dims od;
        ASSERT_TRUE(ops::broadcast_dims({s[0], s[1], s[2]}, od));
        Tensor want =
            expected_eltwise(t, od, ins, [](const std::vector<double>& v) { return v[0] != 0 ? v[1] : v[2]; });
        SCOPED_TRACE(std::string(dtype_name(ct)) + " " + dtype_name(t) + " " + dims_to_string(s[0]));
        expect_case(c, want, 0, 0);
        expect_kernels_match(c, 0, 0);
      }
  OpCase bad("WhereNonzero", 1, "kiln");
  bad.input(DataType::kFloat32, {2}).input(DataType::kFloat32, {2}).input(DataType::kFloat32, {2});
  EXPECT_FALSE(bad.run().ok());  // a float condition is not taken
}

}  // namespace
}  // namespace kiln::test

#include <cstring>

#include "harness/op_harness.h"

namespace kiln::test {
namespace {

TEST(BitsBitCast, ReinterpretsBytes) {
  OpCase c("BitCast", 26);
  c.attr("to", ir::Attribute::from_int(static_cast<int>(DataType::kInt32)));
  c.input(DataType::kFloat32, {3, 4}, -100, 100);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  ASSERT_EQ((*out)[0].dtype(), DataType::kInt32);
  ASSERT_EQ((*out)[0].dims(), x.dims());
  for (int64_t i = 0; i < x.numel(); ++i) {
    int32_t want;
    float f = x.data_as<float>()[i];
    std::memcpy(&want, &f, 4);
    EXPECT_EQ((*out)[0].data_as<int32_t>()[i], want);
  }
}

TEST(BitsBitCast, RoundTripsHalfAndRejectsSizeMismatch) {
  OpCase c("BitCast", 26);
  c.attr("to", ir::Attribute::from_int(static_cast<int>(DataType::kUInt16)));
  c.input(DataType::kFloat16, {5}, -3, 3);
  auto out = c.run();
  ASSERT_TRUE(out.ok());
  OpCase back("BitCast", 26);
  back.attr("to", ir::Attribute::from_int(static_cast<int>(DataType::kFloat16))).input((*out)[0]);
  auto b = back.run();
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(tensors_close((*b)[0], *c.inputs()[0], 0, 0));

  OpCase bad("BitCast", 26);
  bad.attr("to", ir::Attribute::from_int(static_cast<int>(DataType::kInt64))).input(DataType::kFloat32, {2});
  EXPECT_FALSE(bad.run().ok());
  OpCase str("BitCast", 26);
  str.attr("to", ir::Attribute::from_int(static_cast<int>(DataType::kString))).input(DataType::kFloat32, {2});
  EXPECT_FALSE(str.run().ok());
}

}  // namespace
}  // namespace kiln::test

// TensorProto decoding of the narrow types: 4-/2-bit data arrives packed (raw_data
// or one byte per int32_data entry) and is unpacked to one element per byte.
#include "onnx/tensor_proto.h"

#include <gtest/gtest.h>

namespace kiln::onnx_import {
namespace {

onnx::TensorProto proto(int type, std::vector<int64_t> dims) {
  onnx::TensorProto p;
  p.set_name("t");
  p.set_data_type(type);
  for (int64_t d : dims) p.add_dims(d);
  return p;
}

TEST(TensorProto, Int4FromRawDataIsSignExtended) {
  onnx::TensorProto p = proto(22, {3});  // int4 {1, -2, 3}: bytes 0xE1, 0x03
  p.set_raw_data(std::string("\xE1\x03", 2));
  auto t = tensor_from_proto(p, "", "t");
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->dtype(), DataType::kInt4);
  EXPECT_EQ(t->nbytes(), 3u);
  const int8_t want[] = {1, -2, 3};
  for (int i = 0; i < 3; ++i) EXPECT_EQ(t->data_as<int8_t>()[i], want[i]);
}

TEST(TensorProto, SubByteTypesFromInt32Data) {
  onnx::TensorProto u2 = proto(25, {5});  // uint2 {1, 2, 3, 0, 1}, as onnx.helper.make_tensor writes it
  u2.add_int32_data(57);
  u2.add_int32_data(1);
  auto t = tensor_from_proto(u2, "", "t");
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  const uint8_t want[] = {1, 2, 3, 0, 1};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(t->data_as<uint8_t>()[i], want[i]);

  onnx::TensorProto f4 = proto(23, {3});  // float4e2m1 {1, -2, 6}
  f4.add_int32_data(194);
  f4.add_int32_data(7);
  auto f = tensor_from_proto(f4, "", "t");
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->get_as_double(0), 1.0);
  EXPECT_EQ(f->get_as_double(1), -2.0);
  EXPECT_EQ(f->get_as_double(2), 6.0);

  onnx::TensorProto e4 = proto(17, {2});  // float8e4m3fn {1, -2}: one code per int32
  e4.add_int32_data(56);
  e4.add_int32_data(192);
  auto e = tensor_from_proto(e4, "", "t");
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  EXPECT_EQ(e->get_as_double(0), 1.0);
  EXPECT_EQ(e->get_as_double(1), -2.0);
}

TEST(TensorProto, PackedSizeMismatchIsAnError) {
  onnx::TensorProto p = proto(21, {5});  // uint4 x5 packs into 3 bytes
  p.set_raw_data(std::string(5, '\0'));
  auto t = tensor_from_proto(p, "", "t");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("packs into 3"), std::string::npos) << t.status().to_string();
  onnx::TensorProto f6 = proto(27, {2});
  f6.set_raw_data(std::string(2, '\0'));
  auto u = tensor_from_proto(f6, "", "t");
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().code(), ErrorCode::kUnsupported);
}

}  // namespace
}  // namespace kiln::onnx_import

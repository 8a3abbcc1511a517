// The kiln tool's .npy reader/writer: round trips for every dtype, NumPy's exact
// header layout, and hostile files (every truncation, flipped bytes, bad headers).
// kiln_tests compiles only *_test.cc from tests/models, so the tool's two source
// files are compiled in here (and used by the end-to-end tests too).
#include "../../tools/kiln/npy.cc"
#include "../../tools/kiln/cli_util.cc"

#include <gtest/gtest.h>

#include <random>

namespace kiln::cli {
namespace {

Tensor random_tensor(DataType dt, Dims dims, uint32_t seed) {
  Tensor t = Tensor::empty(dt, dims);
  std::mt19937 rng(seed);
  auto* b = static_cast<uint8_t*>(t.data());
  for (size_t i = 0; i < t.nbytes(); ++i) b[i] = static_cast<uint8_t>(rng());
  if (dt == DataType::kBool)
    for (size_t i = 0; i < t.nbytes(); ++i) b[i] &= 1;
  return t;
}

TEST(NpyTest, RoundTripEveryDtype) {
  const DataType types[] = {DataType::kFloat32, DataType::kFloat64, DataType::kFloat16, DataType::kInt8,
                            DataType::kUInt8,   DataType::kInt16,   DataType::kUInt16,  DataType::kInt32,
                            DataType::kUInt32,  DataType::kInt64,   DataType::kUInt64,  DataType::kBool};
  const Dims shapes[] = {{}, {0}, {7}, {2, 3, 5}, {1, 0, 4}};
  uint32_t seed = 1;
  for (DataType dt : types)
    for (const Dims& d : shapes) {
      Tensor t = random_tensor(dt, d, seed++);
      auto bytes = npy_serialize(t);
      ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
      EXPECT_EQ(bytes.value().size() % 64, t.nbytes() % 64) << "data must start 64-byte aligned";
      auto back = npy_parse(bytes.value().data(), bytes.value().size(), "test");
      ASSERT_TRUE(back.ok()) << dtype_name(dt) << " " << dims_to_string(d) << ": " << back.status().to_string();
      EXPECT_EQ(back.value().dtype(), dt);
      EXPECT_EQ(back.value().dims(), d);
      ASSERT_EQ(back.value().nbytes(), t.nbytes());
      if (t.nbytes()) {
        EXPECT_EQ(std::memcmp(back.value().data(), t.data(), t.nbytes()), 0) << dtype_name(dt);
      }
    }
}

TEST(NpyTest, HeaderMatchesNumPy) {
  // Byte for byte what np.save writes for a float32 (2, 3) array: version 1.0, the
  // dict padded with spaces and '\n' so the data starts at byte 128.
  Tensor t = random_tensor(DataType::kFloat32, {2, 3}, 3);
  auto bytes = npy_serialize(t).value();
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  std::string want =
      std::string("\x93NUMPY\x01\x00\x76\x00", 10) + dict + std::string(128 - 10 - dict.size() - 1, ' ') + "\n";
  ASSERT_EQ(bytes.size(), 128u + 24u);
  EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 128), want);
  EXPECT_EQ(std::memcmp(bytes.data() + 128, t.data(), 24), 0);
  // One-dimensional shapes keep Python's trailing comma; scalars are ().
  auto one = npy_serialize(random_tensor(DataType::kInt64, {4}, 4)).value();
  EXPECT_NE(std::string(one.begin(), one.end()).find("'shape': (4,), }"), std::string::npos);
  auto scalar = npy_serialize(random_tensor(DataType::kInt64, {}, 4)).value();
  EXPECT_NE(std::string(scalar.begin(), scalar.end()).find("'shape': (), }"), std::string::npos);
}

std::vector<uint8_t> with_header(const std::string& header, size_t data_bytes, int major = 1) {
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
  size_t hl = header.size();
  out.push_back(static_cast<uint8_t>(hl & 0xff));
  out.push_back(static_cast<uint8_t>(hl >> 8));
  if (major >= 2) {
    out.push_back(0);
    out.push_back(0);
  }
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 1);
  return out;
}

TEST(NpyTest, ReadsVersion2AndDoubleQuotes) {
  auto b = with_header("{\"descr\": \"<i4\", \"fortran_order\": False, \"shape\": (3,)}\n", 12, 2);
  auto t = npy_parse(b.data(), b.size(), "v2");
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t.value().dtype(), DataType::kInt32);
  EXPECT_EQ(t.value().dims(), (Dims{3}));
}

TEST(NpyTest, RejectsBadHeadersWithClearErrors) {
  struct Case {
    std::string header;
    size_t data;
    std::string expect;
  };
  const Case cases[] = {
      {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, "Fortran"},
      {"{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8, "big-endian"},
      {"{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16, "unsupported dtype"},
      {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, "structured"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8, "shape"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 8, "truncated"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 8, "unexpected bytes"},
      {"{'descr': '<f4', 'shape': (2,), }", 8, "lacks"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", 8, "too large"},
      {"not a dict", 0, "malformed"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,", 0, "malformed"},
  };
  for (const auto& c : cases) {
    auto b = with_header(c.header, c.data);
    auto t = npy_parse(b.data(), b.size(), "bad.npy");
    ASSERT_FALSE(t.ok()) << c.header;
    EXPECT_NE(t.status().message().find(c.expect), std::string::npos) << t.status().message();
    EXPECT_NE(t.status().message().find("bad.npy"), std::string::npos) << t.status().message();
  }
  auto b = with_header("{}", 0, 9);
  EXPECT_FALSE(npy_parse(b.data(), b.size(), "v9").ok());
}

TEST(NpyTest, EveryTruncationIsAnError) {
  auto full = npy_serialize(random_tensor(DataType::kFloat32, {3, 5}, 9)).value();
  for (size_t n = 0; n < full.size(); ++n) {
    auto t = npy_parse(full.data(), n, "cut");
    EXPECT_FALSE(t.ok()) << "a file cut to " << n << " bytes was accepted";
  }
}

TEST(NpyTest, FlippedHeaderBytesNeverCrash) {
  auto full = npy_serialize(random_tensor(DataType::kInt16, {4, 4}, 5)).value();
  std::mt19937 rng(42);
  int rejected = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    auto b = full;
    size_t pos = rng() % 128;  // magic, version, length and header text
    b[pos] = static_cast<uint8_t>(rng());
    auto t = npy_parse(b.data(), b.size(), "flip");
    if (!t.ok()) {
      ++rejected;
      EXPECT_FALSE(t.status().message().empty());
    } else {
      EXPECT_EQ(t.value().nbytes() + 128, b.size());
    }
  }
  EXPECT_GT(rejected, 100);
}

TEST(NpyTest, BoolBytesAreNormalised) {
  auto b = with_header("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", 0);
  b.insert(b.end(), {0, 7, 255});
  auto t = npy_parse(b.data(), b.size(), "bool");
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  const auto* v = static_cast<const uint8_t*>(t.value().data());
  EXPECT_EQ(v[0], 0);
  EXPECT_EQ(v[1], 1);
  EXPECT_EQ(v[2], 1);
}

TEST(NpyTest, SafeFileNames) {
  EXPECT_EQ(safe_file_name("logits/dense:0"), "logits_dense_0");
  EXPECT_EQ(safe_file_name("a.b-c_D9"), "a.b-c_D9");
  EXPECT_EQ(safe_file_name(".."), "___");
  EXPECT_EQ(safe_file_name(""), "_");
}

}  // namespace
}  // namespace kiln::cli

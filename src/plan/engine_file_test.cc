#include "plan/engine_file.h"

#include <gtest/gtest.h>

#include <cstring>

#include "kiln/kiln.h"

namespace kiln::plan {

namespace {
EngineModel small_model() {
  EngineModel m;
  m.graph = std::make_shared<ir::Graph>();
  ir::Graph& g = *m.graph;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{Dim::symbol("batch"), 3}).value();
  g.inputs.push_back(x);
  Tensor w = Tensor::from_vector<float>(DataType::kFloat32, {3}, {0.5f, -2.f, 7.25f});
  ir::Value* c = g.add_constant("w", w);
  ir::Value* y = g.add_value("y", DataType::kFloat32, Shape{Dim::symbol("batch"), 3}).value();
  ir::Node* n = g.add_node("Add", {x, c}, {y}, "add0");
  n->kernel = "ref";
  n->attrs.set("note", ir::Attribute::from_string("kept"));
  n->attrs.set("ints", ir::Attribute::from_ints({1, -2, 3}));
  g.outputs.push_back(y);
  m.profiles.push_back({{"x", {Dims{1, 3}, Dims{4, 3}, Dims{8, 3}}}});
  m.memory.arena_bytes = 0;
  m.metadata["owner"] = "tests";
  m.device = "cpu";
  m.device_arch = host_arch();
  m.kiln_version = version_string();
  return m;
}
}  // namespace

TEST(EngineFile, RoundTripKeepsGraphWeightsProfilesAndMetadata) {
  std::vector<uint8_t> bytes = serialize_engine(small_model());
  ASSERT_EQ(std::memcmp(bytes.data(), kMagic, 8), 0);
  auto r = deserialize_engine(bytes.data(), bytes.size());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const ir::Graph& g = *r->graph;
  ASSERT_EQ(g.nodes().size(), 1u);
  EXPECT_EQ(g.nodes()[0]->name, "add0");
  EXPECT_EQ(g.nodes()[0]->attrs.get_string("note", ""), "kept");
  EXPECT_EQ(g.nodes()[0]->attrs.get_ints("ints"), (std::vector<int64_t>{1, -2, 3}));
  ir::Value* w = g.nodes()[0]->inputs[1];
  ASSERT_TRUE(w->initializer);
  EXPECT_EQ(w->initializer->to_float_vector(), (std::vector<float>{0.5f, -2.f, 7.25f}));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w->initializer->data()) % kAlignment, 0u);
  EXPECT_EQ((*g.inputs[0]->shape)[0].name, "batch");
  EXPECT_EQ(r->profiles[0].at("x")[2], (Dims{8, 3}));
  EXPECT_EQ(r->metadata.at("owner"), "tests");
}

TEST(EngineFile, EveryCorruptedByteIsCaught) {
  std::vector<uint8_t> good = serialize_engine(small_model());
  // Flip one byte at a spread of positions after the header: always refused.
  for (size_t pos = kHeaderBytes; pos < good.size(); pos += 7) {
    std::vector<uint8_t> bad = good;
    bad[pos] ^= 0x5a;
    auto r = deserialize_engine(bad.data(), bad.size());
    ASSERT_FALSE(r.ok()) << "corruption at byte " << pos << " went unnoticed";
    EXPECT_NE(r.status().message().find("corrupt"), std::string::npos) << r.status().message();
  }
}

TEST(EngineFile, ChecksumCatchesBitFlipsInTheWeightBlocks) {
  // Weights large enough for the checksum's 64-byte lanes: every bit of a few words,
  // and pairs of flips 64 bytes apart (the same lane of consecutive blocks).
  EngineModel m = small_model();
  std::vector<float> big(4096);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i % 97) * 0.25f;
  m.graph->add_constant("big", Tensor::from_vector<float>(DataType::kFloat32, {4096}, big));
  std::vector<uint8_t> good = serialize_engine(m);
  ASSERT_TRUE(deserialize_engine(good.data(), good.size()).ok());
  const size_t mid = good.size() / 2 / 64 * 64;
  auto refused = [&](const std::vector<uint8_t>& bad) { return !deserialize_engine(bad.data(), bad.size()).ok(); };
  for (size_t word : {mid, mid + 8, mid + 56, good.size() - 200})
    for (int bit = 0; bit < 64; ++bit) {
      std::vector<uint8_t> bad = good;
      bad[word + bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
      ASSERT_TRUE(refused(bad)) << "bit " << bit << " of the word at " << word;
    }
  for (int bit : {0, 31, 63}) {
    std::vector<uint8_t> bad = good;
    bad[mid + bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    bad[mid + 64 + bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    EXPECT_TRUE(refused(bad)) << "paired flips of bit " << bit;
  }
}

TEST(EngineFile, TruncationWrongMagicAndVersionAreNamed) {
  std::vector<uint8_t> good = serialize_engine(small_model());
  for (size_t n : {size_t{0}, size_t{10}, size_t{63}, size_t{64}, good.size() / 2, good.size() - 1}) {
    auto r = deserialize_engine(good.data(), n);
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().message();
  }
  std::vector<uint8_t> magic = good;
  magic[0] = 'X';
  EXPECT_NE(deserialize_engine(magic.data(), magic.size()).status().message().find("not a kiln engine"),
            std::string::npos);
  std::vector<uint8_t> version = good;
  uint32_t v = 99;
  std::memcpy(version.data() + 8, &v, 4);
  auto r = deserialize_engine(version.data(), version.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kVersionMismatch);
  EXPECT_NE(r.status().message().find("version 99"), std::string::npos) << r.status().message();
}

TEST(EngineFile, OtherKilnVersionIsRefused) {
  EngineModel m = small_model();
  m.kiln_version = "0.0.1";
  std::vector<uint8_t> bytes = serialize_engine(m);
  auto r = deserialize_engine(bytes.data(), bytes.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kVersionMismatch);
  EXPECT_NE(r.status().message().find("0.0.1"), std::string::npos);
}

}  // namespace kiln::plan

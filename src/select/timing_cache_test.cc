#include "select/timing_cache.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "backends/cuda/tactic_sink.h"
#include "passes/fusion_util.h"

namespace kiln::select {
namespace {

namespace fs = std::filesystem;

class CaptureLogger : public Logger {
 public:
  CaptureLogger() : Logger(Severity::kVerbose) {}
  void log(Severity s, const std::string& m) override { lines.push_back({s, m}); }
  std::string warnings() const {
    std::string all;
    for (auto& [s, m] : lines)
      if (s == Severity::kWarning) all += m + "\n";
    return all;
  }
  std::vector<std::pair<Severity, std::string>> lines;
};

// A fresh directory per test, removed at the end.
class TimingCacheFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kiln_timing_cache_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  static std::string read(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static void write(const std::string& p, const std::string& text) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << text;
  }
  fs::path dir_;
};

TimingCache sample(const std::string& key = "NVIDIA H100 80GB HBM3, sm_90, cudnn 91400, cublasLt 130100") {
  TimingCache c(key);
  c.put("::Conv kernel=cuda.cudnn precision=float32 tf32=0 inputs=float32[1,8,16,16] attrs=", {29, 0.0125f, 8, 11});
  c.put("::MatMul kernel=cuda.cublaslt precision=float16 tf32=1 inputs=float16[64,64],float16[64,64] attrs=",
        {1234567890123, 0.5f, 2, 2});
  c.put("com.microsoft::FusedConv kernel=cuda.cudnn attrs=activation:s\"Relu\";", {-1, 0.f, 0, 1});
  return c;
}

TEST(TimingCache, SerializeParseRoundTrip) {
  TimingCache c = sample();
  auto back = TimingCache::parse(c.serialize(), "mem");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->key(), c.key());
  EXPECT_EQ(back->entries(), c.entries());
  // A key with odd characters survives too.
  TimingCache odd("GPU \"x\"\ttab\nnewline \\ backslash");
  auto back2 = TimingCache::parse(odd.serialize(), "mem");
  ASSERT_TRUE(back2.ok()) << back2.status().to_string();
  EXPECT_EQ(back2->key(), odd.key());
}

TEST_F(TimingCacheFile, SaveLoadRoundTripLeavesNoTemporaryFile) {
  TimingCache c = sample();
  ASSERT_TRUE(c.save(path("t.cache")).ok());
  CaptureLogger log;
  auto back = TimingCache::load(path("t.cache"), c.key(), log);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->entries(), c.entries());
  EXPECT_TRUE(log.warnings().empty()) << log.warnings();
  int files = 0;
  for (auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 1) << "the temporary file of the atomic write was left behind";
  // Saving again replaces the file.
  c.put("another", {3, 1.f, 4, 4});
  ASSERT_TRUE(c.save(path("t.cache")).ok());
  auto again = TimingCache::load(path("t.cache"), c.key(), log);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->size(), 4u);
}

TEST_F(TimingCacheFile, MissingFileIsAnEmptyCacheThatSaveCreates) {
  CaptureLogger log;
  auto c = TimingCache::load(path("new.cache"), "key A", log);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->size(), 0u);
  EXPECT_EQ(c->key(), "key A");
  ASSERT_TRUE(c->save(path("new.cache")).ok());
  EXPECT_TRUE(fs::exists(path("new.cache")));
}

TEST_F(TimingCacheFile, KeyMismatchIsIgnoredWithAWarningNamingBothKeys) {
  ASSERT_TRUE(sample("GPU A, sm_80, cudnn 1").save(path("t.cache")).ok());
  CaptureLogger log;
  auto c = TimingCache::load(path("t.cache"), "GPU B, sm_90, cudnn 2", log);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->size(), 0u);
  EXPECT_EQ(c->key(), "GPU B, sm_90, cudnn 2");
  const std::string w = log.warnings();
  EXPECT_NE(w.find("GPU A, sm_80, cudnn 1"), std::string::npos) << w;
  EXPECT_NE(w.find("GPU B, sm_90, cudnn 2"), std::string::npos) << w;
  EXPECT_NE(w.find(path("t.cache")), std::string::npos) << w;
}

TEST_F(TimingCacheFile, OtherFormatVersionIsIgnoredWithAWarning) {
  std::string text = sample().serialize();
  const std::string version = " " + std::to_string(kTimingCacheVersion) + "\n";
  text.replace(text.find(version), version.size(), " 99\n");
  write(path("t.cache"), text);
  CaptureLogger log;
  auto c = TimingCache::load(path("t.cache"), sample().key(), log);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->size(), 0u);
  EXPECT_NE(log.warnings().find("format version 99"), std::string::npos) << log.warnings();
}

// An entry's compiled state (any bytes: a header line, cuDNN's JSON) survives the file; a
// version-3 file (entries of five fields, no states) is still read.
TEST_F(TimingCacheFile, StatesRoundTripAndVersionThreeStillReads) {
  TimingCache c = sample();
  TimingEntry e{5, 0.25f, 4, 6, "kiln-cudnn-plan 91900 00ff 5\n{\"a\":\"\tb\\\\c\x01\xff\"}"};
  c.put("::Conv sig with state", e);
  write(path("t.cache"), c.serialize());
  CaptureLogger log;
  auto back = TimingCache::load(path("t.cache"), c.key(), log);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  ASSERT_NE(back->find("::Conv sig with state"), nullptr);
  EXPECT_EQ(*back->find("::Conv sig with state"), e);
  EXPECT_EQ(back->entries(), c.entries());

  // `text` claiming format `v`, its checksum made right again.
  auto as_version = [](std::string text, int v) {
    const std::string version = " " + std::to_string(kTimingCacheVersion) + "\n";
    text.replace(text.find(version), version.size(), " " + std::to_string(v) + "\n");
    text = text.substr(0, text.rfind("end "));
    uint64_t h = 1469598103934665603ull;  // the file's FNV-1a variant (timing_cache.cc)
    for (unsigned char ch : text) h = (h ^ ch) * 1099511628211ull;
    char sum[17];
    std::snprintf(sum, sizeof sum, "%016llx", static_cast<unsigned long long>(h));
    return text + "end " + sum + "\n";
  };
  auto old = TimingCache::parse(as_version(sample().serialize(), 3), "v3");
  ASSERT_TRUE(old.ok()) << old.status().to_string();
  EXPECT_EQ(old->entries(), sample().entries());
  // A sixth field in a version-3 file is corruption.
  auto bad = TimingCache::parse(as_version(c.serialize(), 3), "bad");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("corrupt: line"), std::string::npos) << bad.status().to_string();
}

TEST_F(TimingCacheFile, EveryTruncationIsAClearError) {
  const std::string text = sample().serialize();
  for (size_t n = 0; n < text.size(); ++n) {
    write(path("t.cache"), text.substr(0, n));
    CaptureLogger log;
    auto c = TimingCache::load(path("t.cache"), sample().key(), log);
    ASSERT_FALSE(c.ok()) << "a file cut to " << n << " of " << text.size() << " bytes was accepted";
    const std::string m = c.status().message();
    EXPECT_NE(m.find(path("t.cache")), std::string::npos) << "cut at " << n << ": " << m;
    EXPECT_TRUE(m.find("truncated") != std::string::npos || m.find("corrupt") != std::string::npos ||
                m.find("bad magic") != std::string::npos || m.find("empty") != std::string::npos)
        << "cut at " << n << ": " << m;
  }
  write(path("t.cache"), text.substr(0, text.find("\n", text.find("entries")) + 1));
  CaptureLogger log;
  auto c = TimingCache::load(path("t.cache"), sample().key(), log);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("truncated: it ends after 0 of 3 entries"), std::string::npos)
      << c.status().message();
}

TEST_F(TimingCacheFile, CorruptFilesAreClearErrors) {
  const std::string text = sample().serialize();
  struct Case {
    std::string name, text, expect;
  };
  std::string digit = text;
  digit[digit.find("0.0125")] = '7';  // still well-formed: only the checksum notices
  std::string tab = text;
  tab[tab.find('\t')] = ' ';
  std::string extra = text + "more\n";
  std::string count = text;
  count.replace(count.find("entries 3"), 9, "entries x");
  std::vector<Case> cases = {
      {"changed digit", digit, "checksum mismatch"},
      {"missing field", tab, "line 4 should be"},
      {"trailing data", extra, "data follows"},
      {"bad count", count, "line 3 should be 'entries <count>'"},
      {"not a cache", "PK\x03\x04 zip file", "bad magic"},
      {"binary junk", std::string("\0\1\2\3\xff", 5), "bad magic"},
  };
  for (const Case& k : cases) {
    write(path("t.cache"), k.text);
    CaptureLogger log;
    auto c = TimingCache::load(path("t.cache"), sample().key(), log);
    ASSERT_FALSE(c.ok()) << k.name << " was accepted";
    EXPECT_EQ(c.status().code(), ErrorCode::kInvalidModel) << k.name;
    EXPECT_NE(c.status().message().find(k.expect), std::string::npos) << k.name << ": " << c.status().message();
    EXPECT_NE(c.status().message().find(path("t.cache")), std::string::npos) << k.name << ": " << c.status().message();
  }
}

TEST_F(TimingCacheFile, UnwritableLocationIsAnIoError) {
  Status s = sample().save(path("no/such/dir/t.cache"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ErrorCode::kIo);
  EXPECT_NE(s.message().find("no/such/dir"), std::string::npos) << s.message();
}

// ---- node signatures

struct SigNet {
  ir::Graph g;
  ir::Node* node = nullptr;
  std::vector<ops::TensorType> types;
  explicit SigNet(Dims x_dims, int64_t group = 1) {
    ir::Value* x = g.add_value("x", DataType::kFloat32, shape_from_dims(x_dims)).value();
    ir::Value* w = g.add_value("w", DataType::kFloat32, Shape{8, 8, 3, 3}).value();
    ir::Value* y = g.add_value("y").value();
    node = g.add_node("Conv", {x, w, nullptr}, {y}, "conv");
    node->kernel = "cuda.cudnn";
    node->attrs.set("pads", ir::Attribute::from_ints({1, 1, 1, 1}));
    node->attrs.set("group", ir::Attribute::from_int(group));
    types = {{DataType::kFloat32, shape_from_dims(x_dims)}, {DataType::kFloat32, Shape{8, 8, 3, 3}}, {}};
  }
  std::string sig(const std::string& build = "tf32=0") const { return node_signature(*node, types, build); }
};

TEST(NodeSignature, StableAndSensitiveToWhatMatters) {
  SigNet a({1, 8, 16, 16}), b({1, 8, 16, 16});
  EXPECT_EQ(a.sig(), b.sig());
  EXPECT_NE(a.sig(), SigNet({2, 8, 16, 16}).sig()) << "batch differs";
  EXPECT_NE(a.sig(), SigNet({1, 8, 16, 17}).sig()) << "width differs";
  EXPECT_NE(a.sig(), SigNet({1, 8, 16, 16}, 2).sig()) << "group differs";
  EXPECT_NE(a.sig(), a.sig("tf32=1")) << "build settings differ";
  SigNet c({1, 8, 16, 16});
  c.node->attrs.set("kiln.nhwc", ir::Attribute::from_int(1));
  EXPECT_NE(a.sig(), c.sig()) << "layout differs";
  SigNet d({1, 8, 16, 16});
  d.node->precision = DataType::kFloat16;
  EXPECT_NE(a.sig(), d.sig()) << "precision differs";
  SigNet e({1, 8, 16, 16});
  e.node->attrs.set(ops::kTacticAttr, ir::Attribute::from_int(7));
  EXPECT_EQ(a.sig(), e.sig()) << "kiln.tactic must not enter the signature";
  e.node->attrs.set(cuda::kKernelStateAttr, ir::Attribute::from_string("kiln-cudnn-plan 1 2 3\n{}"));
  EXPECT_EQ(a.sig(), e.sig()) << "kiln.kernel_state (what the pick compiled) must not enter the signature";
  SigNet f({1, 8, 16, 16});
  f.node->name = "another_name";
  EXPECT_EQ(a.sig(), f.sig()) << "node names must not enter the signature";
  SigNet g({1, 8, 16, 16});
  passes::set_fused_names(*g.node, {"/layer.3/conv", "/layer.3/relu"});
  EXPECT_EQ(a.sig(), g.sig()) << "kiln.fused_from (which nodes a fusion replaced) must not enter the signature: "
                                 "a transformer's identical layers are one timing problem";
}

TEST(NodeSignature, IsOneLineOfPrintableText) {
  SigNet a({1, 8, 16, 16});
  a.node->attrs.set("activation", ir::Attribute::from_string("Re\tlu\n\x01"));
  const std::string s = a.sig();
  for (unsigned char ch : s) EXPECT_TRUE(ch >= 0x20 && ch < 0x7f) << "byte " << int(ch) << " in " << s;
  TimingCache c("k");
  c.put(s, {1, 1.f, 2, 2});
  auto back = TimingCache::parse(c.serialize(), "mem");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  ASSERT_NE(back->find(s), nullptr);
}

}  // namespace
}  // namespace kiln::select

// Weights in an external data file larger than 2 GB (and 4 GB): the tensor sits past
// the 32-bit offsets, in a sparse file that takes no disk. The model must parse, build
// a CPU engine and compute with the right values; a range past the end of the file must
// be refused naming the file and the sizes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "cli_runner.h"
#include "kiln/kiln.h"
#include "onnx/onnx.pb.h"

namespace fs = std::filesystem;

namespace {

constexpr int64_t kRows = 4, kCols = 3;
constexpr int64_t kBytes = kRows * kCols * sizeof(float);

std::vector<float> weights() {
  std::vector<float> w(kRows * kCols);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.5f * static_cast<float>(i) - 1.f;
  return w;
}

// y[2,3] = Gather(W[4,3], idx[2]); W lives in `location` at `offset`.
onnx::ModelProto gather_model(const std::string& location, int64_t offset) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(17);
  auto* g = m.mutable_graph();
  g->set_name("large_external");
  auto io = [](onnx::ValueInfoProto* v, const std::string& name, int elem, std::vector<int64_t> dims) {
    v->set_name(name);
    auto* tt = v->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(elem);
    for (int64_t d : dims) tt->mutable_shape()->add_dim()->set_dim_value(d);
  };
  io(g->add_input(), "idx", onnx::TensorProto::INT64, {2});
  io(g->add_output(), "y", onnx::TensorProto::FLOAT, {2, kCols});
  auto* w = g->add_initializer();
  w->set_name("W");
  w->set_data_type(onnx::TensorProto::FLOAT);
  w->add_dims(kRows);
  w->add_dims(kCols);
  w->set_data_location(onnx::TensorProto::EXTERNAL);
  auto kv = [&](const char* k, const std::string& v) {
    auto* e = w->add_external_data();
    e->set_key(k);
    e->set_value(v);
  };
  kv("location", location);
  kv("offset", std::to_string(offset));
  kv("length", std::to_string(kBytes));
  auto* n = g->add_node();
  n->set_op_type("Gather");
  n->set_name("gather");
  n->add_input("W");
  n->add_input("idx");
  n->add_output("y");
  return m;
}

class LargeExternalData : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = kiln::testing::scratch_dir("large"); }
  void TearDown() override { fs::remove_all(dir_); }

  // A sparse file of `size` bytes holding the weights at `offset` (when they fit).
  void write_sparse(const fs::path& p, int64_t offset, int64_t size) {
    int fd = ::open(p.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << p;
    if (::ftruncate(fd, size) != 0) {
      ::close(fd);
      GTEST_SKIP() << "this filesystem cannot hold a sparse file of " << size << " bytes";
    }
    if (offset + kBytes <= size) {
      auto w = weights();
      ASSERT_EQ(::pwrite(fd, w.data(), kBytes, offset), kBytes);
    }
    ::close(fd);
    struct stat st {};
    ASSERT_EQ(::stat(p.c_str(), &st), 0);
    EXPECT_EQ(st.st_size, size);
    // Sparse: a few blocks at most, however large the file claims to be.
    EXPECT_LT(st.st_blocks * 512, 1 << 20) << "the data file is not sparse";
  }

  fs::path write_model(const onnx::ModelProto& m) {
    fs::path p = dir_ / "model.onnx";
    std::ofstream(p, std::ios::binary) << m.SerializeAsString();
    return p;
  }

  fs::path dir_;
};

TEST_F(LargeExternalData, OffsetsPast2And4GBLoadAndCompute) {
  // Past 2^31 on a 64-byte boundary (mapped in place), and past 2^32 unaligned (read).
  for (int64_t offset : {(int64_t{1} << 31) + 4096 + 64, (int64_t{1} << 32) + 3}) {
    SCOPED_TRACE(offset);
    write_sparse(dir_ / "big.bin", offset, offset + kBytes + 100);
    if (testing::Test::IsSkipped()) return;
    fs::path model = write_model(gather_model("big.bin", offset));

    kiln::Logger logger(kiln::Logger::Severity::kWarning);
    kiln::Builder builder(logger);
    auto net = builder.create_network();
    kiln::OnnxParser parser(*net, logger);
    ASSERT_TRUE(parser.parse_from_file(model.string())) << (parser.num_errors() ? parser.error(0).to_string() : "");
    auto config = builder.create_builder_config();
    auto plan = builder.build_serialized_network(*net, *config);
    ASSERT_TRUE(plan.ok()) << plan.status().to_string();
    kiln::Runtime runtime(logger);
    auto engine = runtime.deserialize(plan.value().data(), plan.value().size());
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    auto ctx = engine.value()->create_execution_context();
    kiln::Tensor idx = kiln::Tensor::empty(kiln::DataType::kInt64, {2});
    idx.data_as<int64_t>()[0] = 3;
    idx.data_as<int64_t>()[1] = 1;
    auto out = ctx->infer({{"idx", idx}});
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const kiln::Tensor& y = out.value().at("y");
    ASSERT_EQ(y.dims(), (kiln::Dims{2, kCols}));
    auto w = weights();
    std::vector<float> expect(w.begin() + 3 * kCols, w.begin() + 4 * kCols);
    expect.insert(expect.end(), w.begin() + 1 * kCols, w.begin() + 2 * kCols);
    EXPECT_EQ(y.to_float_vector(), expect);

    // The kiln command reads it too.
    auto r = kiln::testing::run_cli({"inspect", model.string(), "--report-only"});
    EXPECT_EQ(r.code, 0) << r.output;
    fs::remove(dir_ / "big.bin");
  }
}

TEST_F(LargeExternalData, RangePastTheEndOfTheFileIsRefused) {
  const int64_t offset = (int64_t{1} << 31) + 64;
  const int64_t size = offset + kBytes - 8;  // 8 bytes short
  write_sparse(dir_ / "short.bin", offset, size);
  if (testing::Test::IsSkipped()) return;
  fs::path model = write_model(gather_model("short.bin", offset));
  kiln::Logger logger(kiln::Logger::Severity::kInternalError);
  kiln::Builder builder(logger);
  auto net = builder.create_network();
  kiln::OnnxParser parser(*net, logger);
  EXPECT_FALSE(parser.parse_from_file(model.string()));
  // The first error is the data file's; the Gather reading the missing weight is named after it.
  ASSERT_GE(parser.num_errors(), 1);
  const std::string msg = parser.error(0).to_string();
  EXPECT_NE(msg.find("external file 'short.bin'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("offset " + std::to_string(offset) + " + length " + std::to_string(kBytes) +
                     " runs past the end of the file (" + std::to_string(size) + " bytes)"),
            std::string::npos)
      << msg;
  kiln::testing::expect_cli_error(kiln::testing::run_cli({"build", model.string(), "-o", (dir_ / "x.engine").string()}),
                                  "runs past the end of the file");
}

}  // namespace

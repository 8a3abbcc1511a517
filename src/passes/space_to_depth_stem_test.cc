// space_to_depth_stem: golden IR and numerical equivalence (on the CPU) of the rewritten stem,
// for ResNet's 7x7 / stride 2 / pad 3 geometry, odd sizes, asymmetric pads, 1-4 channels;
// with nhwc_layout and cancel_transposes after it, one Transpose and no channel Pad feed the
// channels-last conv; what it leaves alone (small batches, 3x3 stems, wide inputs, FP32).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "harness/op_harness.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {
namespace {

using testing::context_for;
using testing::op_types;
using testing::run_graph;
using testing::run_pass;

struct StemCase {
  int64_t n, c, h, w, m, kh, kw;
  std::vector<int64_t> pads;
};

std::unique_ptr<ir::Graph> stem_graph(const StemCase& s, bool relu = true) {
  auto g = std::make_unique<ir::Graph>();
  std::mt19937 rng(5);
  ir::Value* x = g->add_value("x", DataType::kFloat32, Shape{s.n, s.c, s.h, s.w}).value();
  g->inputs.push_back(x);
  ir::Value* w = g->add_constant("w", test::random_tensor(DataType::kFloat32, {s.m, s.c, s.kh, s.kw}, rng));
  ir::Value* b = g->add_constant("b", test::random_tensor(DataType::kFloat32, {s.m}, rng));
  ir::Value* y = g->add_value("y").value();
  ir::Node* conv = g->add_node("Conv", {x, w, b}, {y}, "stem");
  conv->opset = 17;
  conv->attrs.set("strides", ir::Attribute::from_ints({2, 2}));
  conv->attrs.set("pads", ir::Attribute::from_ints(s.pads));
  ir::Value* out = y;
  if (relu) {
    out = g->add_value("r").value();
    g->add_node("Relu", {y}, {out}, "relu")->opset = 17;
  }
  g->outputs.push_back(out);
  return g;
}

PassContext half_cuda(const ir::Graph& g, BuilderConfig& cfg, bool fp16 = true) {
  cfg.set_device(DeviceType::kCUDA);
  if (fp16) cfg.set_flag(BuilderFlag::kFP16);
  PassContext ctx = context_for(g, cfg);
  return ctx;
}

void expect_same(const ir::Graph& before, const ir::Graph& after, const Dims& x, double tol = 1e-5) {
  std::mt19937 rng(8);
  Tensor xin = test::random_tensor(DataType::kFloat32, x, rng);
  auto want = run_graph(before, {{"x", xin}});
  auto got = run_graph(after, {{"x", xin}});
  ASSERT_EQ(want.size(), 1u);
  ASSERT_EQ(got.size(), 1u);
  const Tensor& a = want.begin()->second;
  const Tensor& b = got.begin()->second;
  ASSERT_EQ(a.dims(), b.dims());
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::fabs(a.get_as_double(i) - b.get_as_double(i)) / (1 + std::fabs(a.get_as_double(i))));
  EXPECT_LT(worst, tol);
}

int count(const ir::Graph& g, const std::string& op) {
  auto ops = op_types(g);
  return static_cast<int>(std::count(ops.begin(), ops.end(), op));
}

TEST(SpaceToDepthStem, RewritesStemsAndKeepsResults) {
  for (const StemCase& s : {StemCase{8, 3, 32, 32, 16, 7, 7, {3, 3, 3, 3}},  // ResNet's stem, smaller image
                            StemCase{8, 3, 33, 21, 8, 7, 7, {3, 3, 3, 3}},   // odd sizes
                            StemCase{9, 1, 20, 26, 8, 5, 5, {2, 3, 1, 0}},   // asymmetric pads, one channel
                            StemCase{8, 4, 18, 18, 8, 6, 5, {0, 1, 2, 2}},   // even kernel, four channels
                            StemCase{16, 2, 14, 15, 4, 5, 7, {1, 3, 0, 3}}}) {
    SCOPED_TRACE(std::to_string(s.c) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w) + " k" +
                 std::to_string(s.kh) + "x" + std::to_string(s.kw));
    auto g = stem_graph(s);
    std::unique_ptr<ir::Graph> before(g->clone());
    BuilderConfig cfg;
    PassContext ctx = half_cuda(*g, cfg);
    run_pass(*g, space_to_depth_stem, ctx);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    EXPECT_EQ(ctx.stats["space_to_depth_stems"], 1);
    EXPECT_EQ(op_types(*g), (std::vector<std::string>{"SpaceToDepthNhwc", "Transpose", "Conv", "Relu"}))
        << ir::dump(*g);
    for (auto& n : g->nodes())
      if (n->op_type == "Conv") {
        EXPECT_EQ(n->attrs.get_ints("strides"), (std::vector<int64_t>{1, 1}));
        EXPECT_EQ(n->input(1)->initializer->dims()[1], 16) << "2x2 blocks of 4 (padded) channels";
      }
    expect_same(*before, *g, {s.n, s.c, s.h, s.w});
  }
}

// With the precision and layout passes after it, SpaceToDepthNhwc reads the FP32 input and
// writes the FP16 channels-last input of the conv itself: no Cast, no Transpose pair and no
// channel Pad between them.
TEST(SpaceToDepthStem, ChannelsLastConvReadsTheBlocksDirectly) {
  StemCase s{8, 3, 24, 24, 16, 7, 7, {3, 3, 3, 3}};
  auto g = stem_graph(s);
  std::unique_ptr<ir::Graph> before(g->clone());
  BuilderConfig cfg;
  PassContext ctx = half_cuda(*g, cfg);
  for (PassFn p : {space_to_depth_stem, reduce_precision, nhwc_layout, cancel_transposes}) {
    run_pass(*g, p, ctx);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
  }
  EXPECT_EQ(op_types(*g), (std::vector<std::string>{"SpaceToDepthNhwc", "Conv", "Relu", "Cast", "Transpose"}))
      << "the blocks (read from the FP32 input, written FP16), the channels-last conv, its output back to "
         "FP32 NCHW\n"
      << ir::dump(*g);
  expect_same(*before, *g, {s.n, s.c, s.h, s.w}, 1e-2);  // fp16 now
}

TEST(SpaceToDepthStem, LeavesOtherConvsAlone) {
  struct Other {
    const char* why;
    StemCase s;
    bool fp16;
  };
  for (const Other& o : {Other{"batch 1", {1, 3, 32, 32, 16, 7, 7, {3, 3, 3, 3}}, true},
                         Other{"3x3 stem", {8, 3, 32, 32, 16, 3, 3, {1, 1, 1, 1}}, true},
                         Other{"8 channels", {8, 8, 32, 32, 16, 7, 7, {3, 3, 3, 3}}, true},
                         Other{"fp32 engine", {8, 3, 32, 32, 16, 7, 7, {3, 3, 3, 3}}, false}}) {
    SCOPED_TRACE(o.why);
    auto g = stem_graph(o.s, false);
    BuilderConfig cfg;
    PassContext ctx = half_cuda(*g, cfg, o.fp16);
    run_pass(*g, space_to_depth_stem, ctx);
    EXPECT_EQ(op_types(*g), (std::vector<std::string>{"Conv"}));
  }
}

}  // namespace
}  // namespace kiln::passes

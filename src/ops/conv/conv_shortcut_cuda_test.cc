// kiln's conv + shortcut GEMM (conv_shortcut_cuda.h): FusedConv with kiln.shortcut_strides on
// the GPU against FusedConv's reference, which composes Conv's reference kernels.
#include <random>

#include "backends/cuda/device.h"
#include "backends/cuda/node_runner.h"
#include "harness/op_harness.h"
#include "ops/conv/conv_graph_cuda.h"

namespace kiln::test {
namespace {

using ir::Attribute;

struct ShortcutCase {
  int64_t n, oh, ow, c1, c2, m, s;
  const char* act;
  bool b1, b2;
};

// h [n, oh, ow, c1], x [n, (oh - 1) s + 1 (+ extra), ..., c2]; NHWC, OHWI.
OpCase make_shortcut(const ShortcutCase& d, DataType dt, int64_t extra, unsigned seed) {
  OpCase c("FusedConv", 1, "com.microsoft");
  c.attr("kiln.nhwc", Attribute::from_int(1)).attr("kernel_shape", Attribute::from_ints({1, 1}));
  c.attr("kiln.shortcut_strides", Attribute::from_ints({d.s, d.s}));
  if (*d.act) c.attr("activation", Attribute::from_string(d.act));
  std::mt19937 rng(seed);
  const int64_t h2 = (d.oh - 1) * d.s + 1 + extra, w2 = (d.ow - 1) * d.s + 1 + extra;
  c.input(random_tensor(dt, {d.n, d.oh, d.ow, d.c1}, rng, -1, 1));
  c.input(random_tensor(dt, {d.m, 1, 1, d.c1}, rng, -0.25, 0.25));
  if (d.b1)
    c.input(random_tensor(dt, {d.m}, rng, -1, 1));
  else
    c.no_input();
  c.no_input();  // Z
  c.input(random_tensor(dt, {d.n, h2, w2, d.c2}, rng, -1, 1));
  c.input(random_tensor(dt, {d.m, 1, 1, d.c2}, rng, -0.25, 0.25));
  if (d.b2) c.input(random_tensor(dt, {d.m}, rng, -1, 1));
  return c;
}

// The node on the GPU with tactic `tactic` (-1: none named, variant 0 runs).
Result<std::vector<Tensor>> run_cuda(OpCase& c, const std::vector<Tensor>& ref, int64_t tactic = -1) {
  std::vector<const Tensor*> ins;
  for (auto& in : c.inputs()) ins.push_back(in ? &*in : nullptr);
  cuda::NodeRunOptions o;
  o.tactic = tactic;
  return cuda::run_node_on_device(c.node(), "cuda.cudnn", ins, ref, o);
}

TEST(FusedConv, CudaShortcutGemmMatchesReference) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  const std::vector<ShortcutCase> cases = {
      {2, 7, 9, 64, 64, 256, 1, "Relu", true, true},      // ResNet layer1's channels; 126 pixels: one partial tile
      {1, 14, 14, 128, 256, 512, 2, "Relu", true, true},  // layer2's, stride 2: four column blocks
      {3, 5, 6, 192, 64, 128, 2, "", false, true},        // three k steps of h, no activation, one bias
      {1, 16, 16, 64, 128, 384, 1, "Relu", true, false},  // two full tiles (four of 64), three column blocks
      {2, 3, 5, 64, 64, 128, 2, "Relu", true, true},      // 30 pixels: less than one tile
      {4, 70, 70, 64, 64, 256, 1, "Relu", false, true},   // 306 tiles: the Hopper variant's CTAs take several
      {1, 9, 7, 128, 192, 256, 1, "", true, true},        // 63 pixels: a partial tile, five k blocks
      {4, 9, 11, 64, 320, 128, 3, "Relu", false, false},  // stride 3, no biases, K = 384 (6 stages)
      {4, 70, 70, 128, 256, 128, 1, "Relu", true, true},  // K = 384 past the 4-stage ring, several tiles a CTA
  };
  auto info = cuda::device_info(0);
  const bool sm90 = info.ok() && info->cc_major == 9 && info->cc_minor == 0;
  for (const Tol& t : kGpuFloatTols) {
    if (t.dtype == DataType::kFloat32) continue;
    for (size_t i = 0; i < cases.size(); ++i) {
      SCOPED_TRACE(std::string(dtype_name(t.dtype)) + " case " + std::to_string(i));
      const ShortcutCase& d = cases[i];
      // The shortcut's input one row and column larger than the stride needs where s > 1:
      // samples (oy s, ox s) never reach the last ones.
      OpCase c = make_shortcut(d, t.dtype, d.s > 1 ? 1 : 0, 5 + static_cast<unsigned>(i));
      auto ref = c.run("ref");
      ASSERT_TRUE(ref.ok()) << ref.status().to_string();
      ASSERT_EQ((*ref)[0].dims(), (Dims{d.n, d.oh, d.ow, d.m}));
      // Every variant (128 and 64 pixels a CTA; Hopper on an sm_90 GPU). K up to 384 products of values in [-1, 1] x
      // [-0.25, 0.25]: fp32 accumulation, one rounding.
      for (int64_t v = 0; v < ops::cudnn_graph::kShortcutVariants; ++v) {
        // The Hopper variants (every case here has rows of at most 128 pixels; the resident
        // weights' variant takes K <= 384, as every case here has).
        if (v >= 2 && !sm90) continue;
        SCOPED_TRACE("variant " + std::to_string(v));
        auto got = run_cuda(c, *ref, ops::cudnn_graph::kShortcutTactic + v);
        ASSERT_TRUE(got.ok()) << got.status().to_string();
        EXPECT_TRUE(tensors_close((*got)[0], (*ref)[0], t.rtol, 4 * t.atol));
      }
    }
  }
}

TEST(FusedConv, CudaShortcutGemmHopperPickFallsBackWhereItDoesNotTake) {
  // An engine whose node picked a Hopper variant at its opt shape, run at a shape of the profile
  // with strided output rows of 130 pixels (past the Hopper kernels' 128): variant 0 runs it.
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  OpCase c = make_shortcut({1, 3, 130, 64, 64, 128, 2, "Relu", true, true}, DataType::kFloat16, 0, 9);
  auto ref = c.run("ref");
  ASSERT_TRUE(ref.ok()) << ref.status().to_string();
  for (int64_t v : {2, 3}) {  // the Hopper variants
    SCOPED_TRACE("variant " + std::to_string(v));
    auto got = run_cuda(c, *ref, ops::cudnn_graph::kShortcutTactic + v);
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_TRUE(tensors_close((*got)[0], (*ref)[0], 1e-2, 4e-2));
  }
}

TEST(FusedConv, CudaShortcutGemmRefusesWhatItDoesNotTake) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  // 96 output channels (not a multiple of 128): a clear error naming the kernel, not a crash.
  OpCase c = make_shortcut({1, 4, 4, 64, 64, 96, 1, "Relu", true, true}, DataType::kFloat16, 0, 3);
  auto ref = c.run("ref");
  ASSERT_TRUE(ref.ok()) << ref.status().to_string();
  auto got = run_cuda(c, *ref);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("shortcut"), std::string::npos) << got.status().message();
  // A shortcut input whose sampled grid is not the output's (4 x 4 at stride 2 gives 2 x 2, not 4 x 4).
  OpCase bad = make_shortcut({1, 4, 4, 64, 64, 128, 2, "Relu", true, true}, DataType::kFloat16, 0, 4);
  std::vector<const Tensor*> ins;
  for (auto& in : bad.inputs()) ins.push_back(in ? &*in : nullptr);
  Tensor x2 = Tensor::zeros(DataType::kFloat16, {1, 4, 4, 64});
  ins[4] = &x2;
  std::vector<Tensor> outs = {Tensor::zeros(DataType::kFloat16, {1, 4, 4, 128})};
  auto got2 = cuda::run_node_on_device(bad.node(), "cuda.cudnn", ins, outs, cuda::NodeRunOptions{});
  ASSERT_FALSE(got2.ok());
}

}  // namespace
}  // namespace kiln::test

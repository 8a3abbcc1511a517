// kiln's bottleneck chain (conv_chain_cuda.h): FusedConv with kiln.chain_activation on the GPU
// against FusedConv's reference (Conv's reference kernels composed), both outputs, both tactics.
#include <random>

#include "backends/cuda/device.h"
#include "backends/cuda/node_runner.h"
#include "harness/op_harness.h"
#include "ops/conv/conv_graph_cuda.h"

namespace kiln::test {
namespace {

using ir::Attribute;

struct ChainCase {
  int64_t n, oh, ow, c1, c2, m, m2;  // c2 > 0: a stride-1 shortcut
  bool z, relu, relu3, biases;
};

// h [n, oh, ow, c1] -> y [.., m] -> h2 [.., m2]; NHWC, OHWI.
OpCase make_chain(const ChainCase& d, DataType dt, unsigned seed) {
  OpCase c("FusedConv", 1, "com.microsoft");
  c.attr("kiln.nhwc", Attribute::from_int(1)).attr("kernel_shape", Attribute::from_ints({1, 1}));
  if (d.relu) c.attr("activation", Attribute::from_string("Relu"));
  c.attr("kiln.chain_activation", Attribute::from_string(d.relu3 ? "Relu" : ""));
  if (d.c2 > 0) c.attr("kiln.shortcut_strides", Attribute::from_ints({1, 1}));
  c.outputs(2);
  std::mt19937 rng(seed);
  auto maybe_bias = [&](int64_t k) {
    if (d.biases)
      c.input(random_tensor(dt, {k}, rng, -1, 1));
    else
      c.no_input();
  };
  c.input(random_tensor(dt, {d.n, d.oh, d.ow, d.c1}, rng, -1, 1));
  c.input(random_tensor(dt, {d.m, 1, 1, d.c1}, rng, -0.25, 0.25));
  maybe_bias(d.m);
  if (d.z)
    c.input(random_tensor(dt, {d.n, d.oh, d.ow, d.m}, rng, -1, 1));
  else
    c.no_input();
  if (d.c2 > 0) {
    c.input(random_tensor(dt, {d.n, d.oh, d.ow, d.c2}, rng, -1, 1));
    c.input(random_tensor(dt, {d.m, 1, 1, d.c2}, rng, -0.25, 0.25));
    maybe_bias(d.m);
  } else {
    c.no_input().no_input().no_input();
  }
  c.input(random_tensor(dt, {d.m2, 1, 1, d.m}, rng, -0.125, 0.125));
  maybe_bias(d.m2);
  return c;
}

Result<std::vector<Tensor>> run_cuda(OpCase& c, const std::vector<Tensor>& ref, int64_t tactic) {
  std::vector<const Tensor*> ins;
  for (auto& in : c.inputs()) ins.push_back(in ? &*in : nullptr);
  cuda::NodeRunOptions o;
  o.tactic = tactic;
  return cuda::run_node_on_device(c.node(), "cuda.cudnn", ins, ref, o);
}

bool on_sm90() {
  auto info = cuda::device_info(0);
  return info.ok() && info->cc_major == 9 && info->cc_minor == 0;
}

TEST(FusedConv, CudaChainMatchesReference) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  const std::vector<ChainCase> cases = {
      {2, 7, 9, 64, 0, 256, 64, true, true, true, true},       // layer1's middle blocks; 126 pixels: a partial tile
      {4, 70, 70, 64, 64, 256, 64, false, true, true, true},   // layer1.0 (the shortcut); 307 tiles a few a CTA
      {3, 11, 13, 64, 0, 256, 128, true, true, true, true},    // layer1.2 -> layer2.0's conv1 (128 channels)
      {1, 9, 7, 128, 0, 256, 64, false, false, false, false},  // two k blocks of h, no activations, no biases
      {1, 5, 6, 64, 0, 256, 64, true, true, false, true},      // 30 pixels: less than one tile
      // y's weights streamed in chunks of 64 channels (tiles of 128 pixels)
      {2, 9, 10, 128, 0, 512, 128, true, true, true, true},   // layer2's middle blocks; 180 pixels, a partial tile
      {3, 28, 28, 128, 0, 512, 64, true, true, true, true},   // 2,352 pixels: CTAs take several tiles
      {1, 7, 9, 64, 0, 384, 128, false, false, true, false},  // six chunks, one k block, no z, no biases
      {1, 6, 7, 128, 0, 256, 128, true, true, true, true},    // M 256 past the resident weights' 192 channels
  };
  const bool sm90 = on_sm90();
  for (const Tol& t : kGpuFloatTols) {
    if (t.dtype == DataType::kFloat32) continue;
    for (size_t i = 0; i < cases.size(); ++i) {
      SCOPED_TRACE(std::string(dtype_name(t.dtype)) + " case " + std::to_string(i));
      const ChainCase& d = cases[i];
      OpCase c = make_chain(d, t.dtype, 11 + static_cast<unsigned>(i));
      auto ref = c.run("ref");
      ASSERT_TRUE(ref.ok()) << ref.status().to_string();
      ASSERT_EQ(ref->size(), 2u);
      ASSERT_EQ((*ref)[0].dims(), (Dims{d.n, d.oh, d.ow, d.m}));
      ASSERT_EQ((*ref)[1].dims(), (Dims{d.n, d.oh, d.ow, d.m2}));
      // h2 sums 256 products of y (rounded to 16 bits, as both paths store it) and W3: its error
      // follows y's rounding; the tolerances are the GPU's half-precision ones, scaled as the
      // shortcut GEMM's test does.
      for (int64_t v = 0; v < ops::cudnn_graph::kChainVariants; ++v) {
        if (v == 0 && !sm90) continue;  // the Hopper kernel
        SCOPED_TRACE("tactic " + std::to_string(v));
        auto got = run_cuda(c, *ref, ops::cudnn_graph::kChainTactic + v);
        ASSERT_TRUE(got.ok()) << got.status().to_string();
        EXPECT_TRUE(tensors_close((*got)[0], (*ref)[0], t.rtol, 4 * t.atol));
        EXPECT_TRUE(tensors_close((*got)[1], (*ref)[1], 2 * t.rtol, 8 * t.atol));
      }
    }
  }
}

TEST(FusedConv, CudaChainHopperPickRunsTwoStepsWhereItDoesNotTake) {
  // An engine naming the Hopper kernel for a node it does not take (a shortcut with c1 + c2 + m2
  // = 256 > 192: the weights would not stay resident, and the streamed kernel takes no shortcut):
  // the two steps run it, same answers.
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  OpCase c = make_chain({1, 6, 7, 64, 64, 256, 128, false, true, true, true}, DataType::kFloat16, 7);
  auto ref = c.run("ref");
  ASSERT_TRUE(ref.ok()) << ref.status().to_string();
  auto got = run_cuda(c, *ref, ops::cudnn_graph::kChainTactic);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_TRUE(tensors_close((*got)[0], (*ref)[0], 1e-2, 4e-2));
  EXPECT_TRUE(tensors_close((*got)[1], (*ref)[1], 2e-2, 8e-2));
}

TEST(FusedConv, CudaChainRefusesWhatItDoesNotTake) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  // A strided shortcut under the chain: a clear error naming the chain, not a crash.
  OpCase c = make_chain({1, 4, 4, 64, 64, 256, 64, false, true, true, true}, DataType::kFloat16, 3);
  c.attr("kiln.shortcut_strides", Attribute::from_ints({2, 2}));
  std::vector<const Tensor*> ins;
  for (auto& in : c.inputs()) ins.push_back(in ? &*in : nullptr);
  Tensor x2 = Tensor::zeros(DataType::kFloat16, {1, 7, 7, 64});
  ins[4] = &x2;
  std::vector<Tensor> outs = {Tensor::zeros(DataType::kFloat16, {1, 4, 4, 256}),
                              Tensor::zeros(DataType::kFloat16, {1, 4, 4, 64})};
  auto got = cuda::run_node_on_device(c.node(), "cuda.cudnn", ins, outs, cuda::NodeRunOptions{});
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("chain"), std::string::npos) << got.status().message();
}

}  // namespace
}  // namespace kiln::test

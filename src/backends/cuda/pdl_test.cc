// Kernels launched with programmatic dependent launch (pdl.cuh) wait for the kernel
// before them: each runs after a producer that lets dependents launch at once and
// writes the kernel's first input 200 us later (OpCase::run_after_late_producer).
// A kernel that read before pdl_wait() would see 0xFF bytes (NaN) there.
#include <gtest/gtest.h>

#include <string>

#include "backends/cuda/device.h"
#include "harness/op_harness.h"

namespace kiln::test {
namespace {

using ir::Attribute;
constexpr DataType kF16 = DataType::kFloat16;
constexpr DataType kF32 = DataType::kFloat32;

void expect_waits(OpCase& c, const std::string& kernel, double tol) {
  auto ref = c.run("ref");
  ASSERT_TRUE(ref.ok()) << ref.status().to_string();
  for (int rep = 0; rep < 2; ++rep) {  // the second run has nothing left to compile first
    auto got = c.run_after_late_producer(kernel);
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    ASSERT_EQ(got->size(), ref->size());
    for (size_t i = 0; i < ref->size(); ++i)
      if (!(*ref)[i].is_null() && !(*got)[i].is_null())
        EXPECT_TRUE(tensors_close((*got)[i], (*ref)[i], tol, tol)) << kernel << " output " << i << " run " << rep;
  }
}

bool have_gpu() { return cuda::device_count() > 0; }

TEST(Pdl, RowNormKernelsWaitForTheProducer) {
  if (!have_gpu()) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  for (int64_t cols : {768, 1536}) {  // one warp a row; one block a row
    SCOPED_TRACE("cols " + std::to_string(cols));
    OpCase c("LayerNormalization", 17);
    c.attr("epsilon", Attribute::from_float(1e-5f));
    c.input(kF16, {128, cols}, -2, 2).input(kF16, {cols}).input(kF16, {cols});
    expect_waits(c, "cuda.row_norm", 2e-2);
    OpCase s("SkipLayerNormalization", 1, "com.microsoft");
    s.attr("epsilon", Attribute::from_float(1e-5f));
    s.input(kF16, {2, 64, cols}, -2, 2).input(kF16, {2, 64, cols}).input(kF16, {cols}).input(kF16, {cols});
    expect_waits(s, "cuda.skip_layer_norm", 2e-2);
  }
}

TEST(Pdl, ElementwiseKernelsWaitForTheProducer) {
  if (!have_gpu()) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  OpCase cast("Cast", 17);
  cast.attr("to", Attribute::from_int(static_cast<int64_t>(kF16)));
  cast.input(kF32, {64, 1000}, -4, 4);
  expect_waits(cast, "cuda.cast", 1e-3);
  for (bool broadcast : {false, true}) {
    SCOPED_TRACE(broadcast ? "broadcast" : "flat");
    OpCase f("FusedElementwise", 1, "kiln");
    f.attr("program", Attribute::from_string("v1; t0 = Mul(in0, in1); t1 = Sigmoid(t0); t2 = Add(t1, 0.5)"));
    f.input(kF16, {64, 1000}).input(kF16, broadcast ? Dims{1000} : Dims{64, 1000});
    expect_waits(f, "cuda.fused_elementwise", 1e-2);
  }
}

TEST(Pdl, AttentionKernelsWaitForTheProducer) {
  if (!have_gpu()) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  for (DataType t : {kF16, kF32}) {
    SCOPED_TRACE(dtype_name(t));
    OpCase c("FusedAttention", 1, "kiln");
    c.attr("scale", Attribute::from_float(0.125f));
    for (const char* v : {"q_view", "k_view", "v_view", "o_view"}) c.attr(v, Attribute::from_ints({}));
    c.attr("zero_masked_rows", Attribute::from_int(1));
    for (int i = 0; i < 3; ++i) c.input(t, {1, 12, 128, 64}, -2, 2);
    c.no_input();
    expect_waits(c, "cuda.flash_attention", 2e-2);
  }
}

}  // namespace
}  // namespace kiln::test

// FusedAttention (kiln): the reference kernel against a naive attention over the
// explicitly gathered logical operands, for the layouts exporters produce (BERT's
// head split, ViT's packed QKV through five view ops), masks, fully masked rows;
// the CUDA kernel against the reference when a GPU is present.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>

#include "backends/cuda/device.h"
#include "backends/cuda/node_runner.h"
#include "harness/op_harness.h"
#include "ops/attention/attn_view.h"
#include "ops/attention/fused_attention.h"

namespace kiln::test {
namespace {

using ir::Attribute;
namespace av = ops::attn;

Tensor i64(const std::vector<int64_t>& v) {
  return Tensor::from_vector<int64_t>(DataType::kInt64, {(int64_t)v.size()}, v);
}

std::vector<int64_t> prog(std::initializer_list<std::pair<av::ViewOp, std::vector<int64_t>>> steps) {
  std::vector<int64_t> code;
  for (auto& [op, args] : steps) av::encode_step(code, op, args);
  return code;
}

// softmax(q k^T * scale + mask) v on logical [B,H,S,D] arrays given by accessor functions.
template <class Q, class K, class V, class M>
std::vector<double> naive(int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D, int64_t Dv, double scale, Q q, K k,
                          V v, M mask, bool zero_rows) {
  std::vector<double> y(static_cast<size_t>(B * H * Sq * Dv));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Sq; ++i) {
        std::vector<double> s(static_cast<size_t>(Sk));
        double mx = -INFINITY;
        for (int64_t j = 0; j < Sk; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += q(b, h, i, d) * k(b, h, j, d);
          s[j] = dot * scale + mask(b, h, i, j);
          mx = std::max(mx, s[j]);
        }
        bool dead = std::isinf(mx) && mx < 0;
        double sum = 0;
        for (double& x : s) sum += (x = dead ? 0 : std::exp(x - mx));
        for (int64_t d = 0; d < Dv; ++d) {
          double o = 0;
          for (int64_t j = 0; j < Sk; ++j) o += s[j] * v(b, h, j, d);
          y[static_cast<size_t>(((b * H + h) * Sq + i) * Dv + d)] = dead ? (zero_rows ? 0 : NAN) : o / sum;
        }
      }
  return y;
}

// BERT layout: Q/K/V [B, S, H*D] -> Reshape [B,S,H,D] -> Transpose; output merged back to [B,S,H,D].
struct BertCase {
  int64_t B = 2, S = 37, H = 3, D = 16;
  bool mask = true;
  std::optional<Tensor> mask_value;  // the mask's contents (default random in [-3, 1])
  DataType dt = DataType::kFloat32;
  OpCase make(unsigned seed) const {
    OpCase c("FusedAttention", 1, "kiln");
    c.attr("scale", Attribute::from_float(0.37f));
    c.attr("q_view", Attribute::from_ints(prog({{av::kReshape, {4, 0}}, {av::kTranspose, {0, 2, 1, 3}}})));
    c.attr("k_view", Attribute::from_ints(prog(
                         {{av::kReshape, {4, 0}}, {av::kTranspose, {0, 2, 3, 1}}, {av::kTranspose, {0, 1, 3, 2}}})));
    c.attr("v_view", Attribute::from_ints(prog({{av::kReshape, {4, 0}}, {av::kTranspose, {0, 2, 1, 3}}})));
    c.attr("o_view", Attribute::from_ints(prog({{av::kTranspose, {0, 2, 1, 3}}})));
    c.attr("zero_masked_rows", Attribute::from_int(1));
    c.seed(seed);
    for (int i = 0; i < 3; ++i) c.input(dt, {B, S, H * D}, -2, 2);
    if (mask_value)
      c.input(*mask_value);
    else if (mask)
      c.input(dt, {B, 1, 1, S}, -3, 1);
    else
      c.no_input();
    c.input(i64({0, 0, H, D}));  // 0 copies the input dim (allowzero = 0)
    return c;
  }
};

TEST(FusedAttention, BertLayoutMatchesNaive) {
  for (bool mask : {true, false}) {
    BertCase bc;
    bc.mask = mask;
    OpCase c = bc.make(7);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const auto& in = c.inputs();
    const int64_t B = bc.B, S = bc.S, H = bc.H, D = bc.D, E = H * D;
    auto at = [&](int k) {
      return [&, k](int64_t b, int64_t h, int64_t s, int64_t d) {
        return in[k]->get_as_double((b * S + s) * E + h * D + d);
      };
    };
    auto m = [&](int64_t b, int64_t, int64_t, int64_t j) { return mask ? in[3]->get_as_double(b * S + j) : 0.0; };
    auto want = naive(B, H, S, S, D, D, 0.37, at(0), at(1), at(2), m, true);
    ASSERT_EQ((*out)[0].dims(), (Dims{B, S, H, D}));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t s = 0; s < S; ++s)
          for (int64_t d = 0; d < D; ++d)
            ASSERT_NEAR((*out)[0].get_as_double(((b * S + s) * H + h) * D + d), want[((b * H + h) * S + s) * D + d],
                        1e-5)
                << "mask " << mask << " at b" << b << " h" << h << " s" << s << " d" << d;
  }
}

TEST(FusedAttention, FullyMaskedRowsGiveZeroOrNaN) {
  for (int zero : {1, 0}) {
    OpCase c("FusedAttention", 1, "kiln");
    c.attr("scale", Attribute::from_float(1.f));
    c.attr("q_view", Attribute::from_ints({}));
    c.attr("k_view", Attribute::from_ints(prog({{av::kTranspose, {0, 1, 3, 2}}})));  // base is K^T
    c.attr("v_view", Attribute::from_ints({}));
    c.attr("o_view", Attribute::from_ints({}));
    c.attr("zero_masked_rows", Attribute::from_int(zero));
    c.input(DataType::kFloat32, {1, 2, 3, 8})
        .input(DataType::kFloat32, {1, 2, 8, 5})
        .input(DataType::kFloat32, {1, 2, 5, 4});
    const float inf = std::numeric_limits<float>::infinity();
    // Row 1 of every head sees only -inf; the others see a few keys.
    c.input(Tensor::from_vector<float>(DataType::kFloat32, {3, 5},
                                       {0, -inf, 0, 0, -inf, -inf, -inf, -inf, -inf, -inf, 0, 0, 0, 0, -inf}));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const Tensor& y = (*out)[0];
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t d = 0; d < 4; ++d) {
        double x = y.get_as_double((h * 3 + 1) * 4 + d);
        if (zero)
          EXPECT_EQ(x, 0.0);
        else
          EXPECT_TRUE(std::isnan(x));
        EXPECT_TRUE(std::isfinite(y.get_as_double((h * 3 + 0) * 4 + d)));
      }
    if (zero) {
      EXPECT_GE(c.expect_all_kernels_match(1e-4, 1e-4), 0);
    }
  }
}

// ViT (torchvision MultiheadAttention) layout: packed [S, B, 3*E] in-projection,
// every operand read through five view ops.
OpCase packed_qkv_case(int64_t S, int64_t B, int64_t H, int64_t D, DataType dt, Tensor* packed_out = nullptr) {
  const int64_t E = H * D;
  OpCase c("FusedAttention", 1, "kiln");
  c.attr("scale", Attribute::from_float(0.25f));
  auto view = [&](int64_t which) {
    return prog({{av::kReshape, {4, 0}},             // [S, B, 3, E]
                 {av::kUnsqueeze, {0}},              // [1, S, B, 3, E]
                 {av::kTranspose, {3, 1, 2, 0, 4}},  // [3, S, B, 1, E]
                 {av::kSqueeze, {-2}},               // [3, S, B, E]
                 {av::kGather, {0, which}},          // [S, B, E]
                 {av::kReshape, {5, 0}},             // [S, B*H, D]
                 {av::kTranspose, {1, 0, 2}},        // [B*H, S, D]
                 {av::kReshape, {6, 0}}});           // [B, H, S, D]
  };
  auto kv = view(1);
  av::encode_step(kv, av::kTranspose, {0, 1, 3, 2});
  av::encode_step(kv, av::kTranspose, {0, 1, 3, 2});  // twice: K^T then back
  c.attr("q_view", Attribute::from_ints(view(0)));
  c.attr("k_view", Attribute::from_ints(kv));
  c.attr("v_view", Attribute::from_ints(view(-1)));  // negative index: 2
  c.attr("o_view", Attribute::from_ints(prog({{av::kTranspose, {2, 0, 1, 3}}, {av::kReshape, {7, 0}}})));
  Tensor f32 = Tensor::empty(DataType::kFloat32, {S, B, 3 * E});
  for (int64_t i = 0; i < f32.numel(); ++i) f32.data_as<float>()[i] = std::sin(0.37 * i) * 1.5f;
  Tensor packed = Tensor::empty(dt, {S, B, 3 * E});
  for (int64_t i = 0; i < packed.numel(); ++i) packed.set_from_double(i, f32.data_as<float>()[i]);
  if (packed_out) *packed_out = packed;
  c.input(packed).input(packed).input(packed).no_input();
  c.input(i64({S, B, 3, E})).input(i64({S, B * H, D})).input(i64({B, H, S, D})).input(i64({S, B, E}));
  return c;
}

TEST(FusedAttention, PackedQkvThroughViewsMatchesNaive) {
  const int64_t S = 21, B = 3, H = 4, D = 16, E = H * D;
  Tensor packed;
  OpCase c = packed_qkv_case(S, B, H, D, DataType::kFloat32, &packed);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  auto at = [&](int64_t which) {
    return [&, which](int64_t b, int64_t h, int64_t s, int64_t d) {
      return packed.get_as_double((s * B + b) * 3 * E + which * E + h * D + d);
    };
  };
  auto want = naive(
      B, H, S, S, D, D, 0.25, at(0), at(1), at(2), [](int64_t, int64_t, int64_t, int64_t) { return 0.0; }, false);
  ASSERT_EQ((*out)[0].dims(), (Dims{S, B, E}));
  for (int64_t s = 0; s < S; ++s)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d)
          ASSERT_NEAR((*out)[0].get_as_double((s * B + b) * E + h * D + d), want[((b * H + h) * S + s) * D + d], 1e-5)
              << s << " " << b << " " << h << " " << d;
  EXPECT_GE(c.expect_all_kernels_match(1e-4, 1e-4), 0);
}

TEST(FusedAttention, CudaMatchesReferenceAcrossDtypesAndSizes) {
  struct Shape_ {
    int64_t B, S, H, D;
  };
  for (Shape_ s : {Shape_{2, 37, 3, 16}, Shape_{1, 128, 2, 64}, Shape_{3, 197, 2, 64}, Shape_{1, 70, 1, 24},
                   Shape_{1, 5, 2, 128}}) {
    for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16}) {
      BertCase bc;
      bc.B = s.B, bc.S = s.S, bc.H = s.H, bc.D = s.D, bc.dt = dt;
      OpCase c = bc.make(11);
      double tol = dt == DataType::kFloat32 ? 1e-4 : dt == DataType::kFloat16 ? 1e-2 : 3e-2;
      SCOPED_TRACE(std::string(dtype_name(dt)) + " B" + std::to_string(s.B) + " S" + std::to_string(s.S) + " D" +
                   std::to_string(s.D));
      c.expect_all_kernels_match(tol, tol);
    }
  }
}

TEST(FusedAttention, CudaFourWarpBlocksMatchReference) {
  // Enough (batch x heads x 64-row tiles) for the kernel's 4-warp configuration.
  for (DataType dt : {DataType::kFloat16, DataType::kFloat32}) {
    BertCase bc;
    bc.B = 6, bc.S = 130, bc.H = 12, bc.D = 32, bc.dt = dt;
    OpCase c = bc.make(13);
    double tol = dt == DataType::kFloat32 ? 1e-4 : 1e-2;
    SCOPED_TRACE(dtype_name(dt));
    c.expect_all_kernels_match(tol, tol);
  }
}

// The register-resident kernel (fp16/bf16, head size 64 or 128): one- and four-warp
// blocks, key counts that are not a multiple of the 64-key tile, ViT's packed
// layout, fully masked rows.
TEST(FusedAttention, CudaRegisterKernelMatchesReference) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no CUDA device: the reference runs would compare against nothing";
  struct Shape_ {
    int64_t B, S, H, D;
  };
  // Batch 1 and small grids split the keys over 2 or 4 warps (BERT bs1: 1x128x12x64;
  // 1x50x2x64: two 32-key tiles, the second partial; 1x200x3x128: 7 tiles over 4 warps).
  for (Shape_ s : {Shape_{6, 197, 12, 64}, Shape_{4, 130, 12, 128}, Shape_{1, 200, 3, 128}, Shape_{2, 1, 2, 64},
                   Shape_{1, 128, 12, 64}, Shape_{1, 50, 2, 64}}) {
    for (DataType dt : {DataType::kFloat16, DataType::kBFloat16}) {
      BertCase bc;
      bc.B = s.B, bc.S = s.S, bc.H = s.H, bc.D = s.D, bc.dt = dt;
      OpCase c = bc.make(17);
      const double tol = dt == DataType::kFloat16 ? 1e-2 : 3e-2;
      SCOPED_TRACE(std::string(dtype_name(dt)) + " B" + std::to_string(s.B) + " S" + std::to_string(s.S) + " D" +
                   std::to_string(s.D));
      c.expect_all_kernels_match(tol, tol);
    }
  }
  for (DataType dt : {DataType::kFloat16, DataType::kBFloat16}) {
    SCOPED_TRACE(std::string("packed ") + dtype_name(dt));
    OpCase c = packed_qkv_case(197, 8, 12, 64, dt);
    c.expect_all_kernels_match(dt == DataType::kFloat16 ? 1e-2 : 3e-2, dt == DataType::kFloat16 ? 1e-2 : 3e-2);
  }
  // Plain [B, H, S, D] operands, a per-query mask whose row 3 is all -inf.
  const int64_t S = 80;
  std::vector<float> mask(static_cast<size_t>(S * S));
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j = 0; j < S; ++j)
      mask[static_cast<size_t>(i * S + j)] = i == 3 || (i + j) % 7 == 0 ? -std::numeric_limits<float>::infinity() : 0.f;
  OpCase c("FusedAttention", 1, "kiln");
  c.attr("scale", Attribute::from_float(0.125f));
  for (const char* v : {"q_view", "k_view", "v_view", "o_view"}) c.attr(v, Attribute::from_ints({}));
  c.attr("zero_masked_rows", Attribute::from_int(1));
  c.seed(5);
  for (int i = 0; i < 3; ++i) c.input(DataType::kFloat16, {2, 3, S, 64}, -2, 2);
  Tensor m = Tensor::empty(DataType::kFloat16, {S, S});
  for (int64_t i = 0; i < m.numel(); ++i) m.set_from_double(i, mask[static_cast<size_t>(i)]);
  c.input(m);
  c.expect_all_kernels_match(1e-2, 1e-2);
}

// c's inputs as the device runner takes them.
std::vector<const Tensor*> input_ptrs(OpCase& c) {
  std::vector<const Tensor*> ins;
  for (const auto& t : c.inputs()) ins.push_back(t ? &*t : nullptr);
  return ins;
}

// The tactics cuda.flash_attention offers for c on the device (ref: c's reference outputs);
// an error when the node cannot be uploaded or asked.
Result<std::vector<int64_t>> flash_tactics(OpCase& c, const std::vector<Tensor>& ref) {
  KILN_ASSIGN_OR_RETURN(auto io, cuda::upload_node_io(c.node(), input_ptrs(c), ref));
  return cuda::node_tactics_on_device(c.node(), "cuda.flash_attention", *io);
}

// Runs the case on every tactic cuda.flash_attention offers (16-bit head size 64: on a
// large grid two register bounds, on sm_90 the Hopper kernel's two CTA sizes where it takes
// the case, then cuDNN's fused attention engines where the graph expresses it; on a small
// grid key groups with and without row streams) and compares each with the reference: all
// finite, within 2e-2. `own`: the fewest own tactics (all before cuDNN's). Returns how many
// of the tactics were cuDNN's.
int expect_every_flash_tactic_matches(OpCase& c, size_t own = 2) {
  auto ref = c.run("ref");
  EXPECT_TRUE(ref.ok()) << ref.status().to_string();
  if (!ref.ok()) return 0;
  const std::vector<const Tensor*> ins = input_ptrs(c);
  auto ids = flash_tactics(c, *ref);
  EXPECT_TRUE(ids.ok()) << ids.status().to_string();
  if (!ids.ok()) return 0;
  size_t first_dnn = 0;
  while (first_dnn < ids->size() && !ops::attn::is_cudnn_sdpa_tactic((*ids)[first_dnn])) ++first_dnn;
  EXPECT_GE(first_dnn, own) << "the kernel's own tactics come first";
  int dnn = 0;
  for (size_t i = 0; i < ids->size(); ++i) {
    const bool is_dnn = ops::attn::is_cudnn_sdpa_tactic((*ids)[i]);
    EXPECT_EQ(is_dnn, i >= first_dnn) << "tactic " << i << " = " << (*ids)[i];
    dnn += is_dnn;
  }
  for (int64_t id : *ids) {
    cuda::NodeRunOptions o;
    o.tactic = id;
    auto got = cuda::run_node_on_device(c.node(), "cuda.flash_attention", ins, *ref, o);
    EXPECT_TRUE(got.ok()) << got.status().to_string();
    if (!got.ok()) continue;
    bool finite = true;
    for (int64_t i = 0; i < (*got)[0].numel() && finite; ++i) finite = std::isfinite((*got)[0].get_as_double(i));
    EXPECT_TRUE(finite) << "tactic " << id;
    EXPECT_TRUE(tensors_close((*got)[0], (*ref)[0], 2e-2, 2e-2)) << "tactic " << id;
  }
  return dnn;
}

// The 64-row blocks of a large grid (12 x 12 heads x 2 blocks): every tactic the kernel
// offers, fp16 and bf16, with a per-query mask whose row 3 is the dtype's lowest finite value
// everywhere (the scores start from mask / scale: that must stay finite, and the row's
// softmax spread over its keys as the reference does) and other rows partly masked.
TEST(FusedAttention, CudaRegisterKernelEveryTacticWithFiniteMaskedRows) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no CUDA device: the reference runs would compare against nothing";
  const int64_t B = 12, H = 12, S = 128;
  for (DataType dt : {DataType::kFloat16, DataType::kBFloat16}) {
    SCOPED_TRACE(dtype_name(dt));
    const double lowest = dt == DataType::kFloat16 ? -65504.0 : -3.3895313892515355e38;
    OpCase c("FusedAttention", 1, "kiln");
    c.attr("scale", Attribute::from_float(0.37f));
    for (const char* v : {"q_view", "k_view", "v_view", "o_view"}) c.attr(v, Attribute::from_ints({}));
    c.attr("zero_masked_rows", Attribute::from_int(1));
    c.seed(11);
    for (int i = 0; i < 3; ++i) c.input(dt, {B, H, S, 64}, -2, 2);
    Tensor m = Tensor::empty(dt, {S, S});
    for (int64_t i = 0; i < S; ++i)
      for (int64_t j = 0; j < S; ++j) m.set_from_double(i * S + j, i == 3 || (i + 2 * j) % 9 == 0 ? lowest : 0.0);
    c.input(m);
    expect_every_flash_tactic_matches(c);
  }
}

// A mask broadcast over the queries ([B, 1, 1, Sk], BERT's) with Sk % 8 == 0 arrives in
// shared memory as row tiles with K and V (the kernel's MT = 1): every tactic, fp16 and bf16,
// two full 64-key tiles (S = 128) and a ragged third of 8 keys (S = 136), one batch whose
// keys are all the dtype's lowest finite value (softmax spreads its rows evenly) and
// others with every fifth key masked that way.
TEST(FusedAttention, CudaRegisterKernelMaskRowTilesEveryTactic) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no CUDA device: the reference runs would compare against nothing";
  for (int64_t S : {128, 136}) {
    for (DataType dt : {DataType::kFloat16, DataType::kBFloat16}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " S" + std::to_string(S));
      const double lowest = dt == DataType::kFloat16 ? -65504.0 : -3.3895313892515355e38;
      BertCase bc;
      bc.B = 12, bc.S = S, bc.H = 12, bc.D = 64, bc.dt = dt;
      Tensor m = Tensor::empty(dt, {bc.B, 1, 1, S});
      for (int64_t b = 0; b < bc.B; ++b)
        for (int64_t j = 0; j < S; ++j) m.set_from_double(b * S + j, b == 2 || (j + b) % 5 == 0 ? lowest : 0.0);
      bc.mask_value = m;
      OpCase c = bc.make(23);
      expect_every_flash_tactic_matches(c);
    }
  }
}

// ViT-B/16's 197 tokens: a ragged last row block (5 live rows of 64) and a ragged last key
// tile of 5 keys, no mask: every tactic.
TEST(FusedAttention, CudaRegisterKernelRaggedRowsEveryTactic) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no CUDA device: the reference runs would compare against nothing";
  for (DataType dt : {DataType::kFloat16, DataType::kBFloat16}) {
    SCOPED_TRACE(dtype_name(dt));
    BertCase bc;
    bc.B = 4, bc.S = 197, bc.H = 12, bc.D = 64, bc.dt = dt, bc.mask = false;
    OpCase c = bc.make(31);
    expect_every_flash_tactic_matches(c);
  }
}

// The Hopper kernel (flash_wgmma.h, its own tactics on sm_90): offered for BERT's layout
// at a large grid. Every tactic matches the reference on BERT's layout of 128 tokens with
// a [B, 1, 1, S] mask and of 100 without one (at most 128 keys: the 96-register build); on
// ViT's packed [S, B, 3E] layout (its tensor maps order h, b, s by stride) with 197 tokens
// (a ragged query block and a last key chunk of 5 keys), on 150 tokens with a per-query
// mask (a last chunk of 22), and on a [B, 1, 1, S] mask of -inf with one batch fully masked
// (zero_masked_rows 1: zeros). With zero_masked_rows 0 that batch's rows are NaN and the
// others finite.
TEST(FusedAttention, CudaHopperKernelViewsMasksAndDeadRows) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no CUDA device: the reference runs would compare against nothing";
  auto info = cuda::device_info(0);
  ASSERT_TRUE(info.ok());
  const bool hopper = info->cc_major == 9 && info->cc_minor == 0;
  {
    BertCase bc;
    bc.B = 12, bc.S = 128, bc.H = 12, bc.D = 64, bc.dt = DataType::kFloat16;
    OpCase c = bc.make(43);
    auto ref = c.run("ref");
    ASSERT_TRUE(ref.ok()) << ref.status().to_string();
    auto ids = flash_tactics(c, *ref);
    ASSERT_TRUE(ids.ok()) << ids.status().to_string();
    bool offered = true;
    for (int64_t i = 0; i < ops::attn::kHopperTactics; ++i)
      offered = offered && std::count(ids->begin(), ids->end(), ops::attn::kHopperTacticBase + i) == 1;
    EXPECT_EQ(offered, hopper) << "the Hopper kernel's tactics are offered on sm_90 only";
    // At most 128 keys: one warp group a CTA runs the 5-CTAs-an-SM build (96 registers).
    expect_every_flash_tactic_matches(c, hopper ? 2 + ops::attn::kHopperTactics : 2);
    bc.S = 100, bc.mask = false, bc.dt = DataType::kBFloat16;  // the same without a mask, a ragged chunk
    OpCase plain = bc.make(44);
    expect_every_flash_tactic_matches(plain, hopper ? 2 + ops::attn::kHopperTactics : 2);
  }
  for (DataType dt : {DataType::kFloat16, DataType::kBFloat16}) {
    SCOPED_TRACE(dtype_name(dt));
    OpCase c = packed_qkv_case(197, 4, 12, 64, dt);
    expect_every_flash_tactic_matches(c, hopper ? 2 + ops::attn::kHopperTactics : 2);
  }
  {  // a last key chunk of 22 live keys (the kernel's n32 step), a random [B, 1, S, S] mask
    BertCase bc;
    bc.B = 6, bc.S = 150, bc.H = 12, bc.D = 64, bc.dt = DataType::kFloat16;
    bc.mask_value = Tensor::empty(bc.dt, {bc.B, 1, bc.S, bc.S});
    for (int64_t i = 0; i < bc.mask_value->numel(); ++i) bc.mask_value->set_from_double(i, std::sin(0.7 * i) * 3.0);
    OpCase c = bc.make(53);
    expect_every_flash_tactic_matches(c, hopper ? 2 + ops::attn::kHopperTactics : 2);
  }
  const double inf = std::numeric_limits<double>::infinity();
  for (int zero : {1, 0}) {
    SCOPED_TRACE("zero_masked_rows " + std::to_string(zero));
    BertCase bc;
    bc.B = 12, bc.S = 136, bc.H = 12, bc.D = 64, bc.dt = DataType::kBFloat16;
    Tensor m = Tensor::empty(bc.dt, {bc.B, 1, 1, bc.S});
    for (int64_t b = 0; b < bc.B; ++b)
      for (int64_t j = 0; j < bc.S; ++j) m.set_from_double(b * bc.S + j, b == 5 || (j * 7 + b) % 6 == 0 ? -inf : 0.0);
    bc.mask_value = m;
    OpCase c = bc.make(47);
    c.attr("zero_masked_rows", Attribute::from_int(zero));
    if (zero) {
      expect_every_flash_tactic_matches(c, hopper ? 2 + ops::attn::kHopperTactics : 2);
      continue;
    }
    if (!hopper) continue;
    auto ref = c.run("ref");
    ASSERT_TRUE(ref.ok()) << ref.status().to_string();
    const std::vector<const Tensor*> ins = input_ptrs(c);
    for (int64_t tactic = ops::attn::kHopperTacticBase;
         tactic < ops::attn::kHopperTacticBase + ops::attn::kHopperTactics; ++tactic) {
      cuda::NodeRunOptions o;
      o.tactic = tactic;
      auto got = cuda::run_node_on_device(c.node(), "cuda.flash_attention", ins, *ref, o);
      ASSERT_TRUE(got.ok()) << got.status().to_string();
      const Tensor& y = (*got)[0];  // [B, S, H * D]
      int bad = 0;
      for (int64_t i = 0; i < y.numel(); ++i) {
        const bool dead = i / (bc.S * bc.H * bc.D) == 5;
        const double x = y.get_as_double(i);
        bad += dead ? !std::isnan(x) : !std::isfinite(x);
      }
      EXPECT_EQ(bad, 0) << "tactic " << tactic << ": NaN exactly in the fully masked batch";
    }
  }
}

// Scores that climb across the key chunks: a [B, 1, 1, S] mask of 0.15 j (+ a wobble) lifts
// key j's score by ~7 log2 units a 32-key chunk, so a row's running maximum moves in every
// chunk by steps of a few log2 units (the online softmax rescales O and l each time); batch 3
// climbs by 0.5 j (steps of ~23) and batch 5 falls (the maximum stays with the first chunk).
// Every tactic against the reference, 197 tokens.
TEST(FusedAttention, CudaEveryTacticWithScoresClimbingAcrossChunks) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no CUDA device: the reference runs would compare against nothing";
  for (DataType dt : {DataType::kFloat16, DataType::kBFloat16}) {
    SCOPED_TRACE(dtype_name(dt));
    BertCase bc;
    bc.B = 8, bc.S = 197, bc.H = 12, bc.D = 64, bc.dt = dt;
    Tensor m = Tensor::empty(dt, {bc.B, 1, 1, bc.S});
    for (int64_t b = 0; b < bc.B; ++b)
      for (int64_t j = 0; j < bc.S; ++j) {
        const double climb = b == 3 ? 0.5 * j : b == 5 ? -0.15 * j : 0.15 * j;
        m.set_from_double(b * bc.S + j, climb + std::sin(0.9 * j + b));
      }
    bc.mask_value = m;
    OpCase c = bc.make(67);
    expect_every_flash_tactic_matches(c);
  }
}

// cuDNN's fused attention engines (sdpa_cudnn_cuda.cu) as tactics: no mask, BERT's head
// split (every operand a strided view of [B, S, H * D]), ViT's ragged 197 tokens and 128,
// head sizes 64 and 128, fp16 and bf16: each engine cuDNN offers against the reference.
// On Hopper (the engines the graph was written for) at least one must be offered.
TEST(FusedAttention, CudaCudnnEnginesMatchReference) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no CUDA device: the reference runs would compare against nothing";
  int offered = 0;
  for (int64_t D : {64, 128}) {
    for (int64_t S : {197, 128}) {
      for (DataType dt : {DataType::kFloat16, DataType::kBFloat16}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " S" + std::to_string(S) + " D" + std::to_string(D));
        BertCase bc;
        // The fewest batches that make a large grid (>= 132 blocks of 64 rows).
        bc.B = S == 197 ? 3 : 6, bc.S = S, bc.H = 12, bc.D = D, bc.dt = dt, bc.mask = false;
        OpCase c = bc.make(37);
        const int n = expect_every_flash_tactic_matches(c, D == 64 ? 2 : 1);
        std::printf("  cuDNN fused attention engines for %s S=%lld D=%lld: %d\n", dtype_name(dt),
                    static_cast<long long>(S), static_cast<long long>(D), n);
        offered += n;
      }
    }
  }
  auto info = cuda::device_info(0);
  ASSERT_TRUE(info.ok());
  if (info->cc_major == 9) {
    EXPECT_GT(offered, 0) << "cuDNN offered no fused attention engine on Hopper";
  }
}

// An engine file whose attention node names a cuDNN engine this cuDNN does not offer (built
// with another cuDNN version), or a cuDNN tactic on a node cuDNN's graph cannot express (a
// mask), still runs correctly: the register-resident kernel takes over.
TEST(FusedAttention, CudaUnknownCudnnTacticRunsTheOwnKernel) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no CUDA device: the reference runs would compare against nothing";
  for (bool mask : {false, true}) {
    SCOPED_TRACE(mask ? "masked" : "unmasked");
    BertCase bc;
    bc.B = 3, bc.S = 197, bc.H = 12, bc.D = 64, bc.dt = DataType::kFloat16, bc.mask = mask;
    OpCase c = bc.make(41);
    auto ref = c.run("ref");
    ASSERT_TRUE(ref.ok()) << ref.status().to_string();
    std::vector<const Tensor*> ins;
    for (const auto& t : c.inputs()) ins.push_back(t ? &*t : nullptr);
    cuda::NodeRunOptions o;
    o.tactic = ops::attn::kCudnnSdpaTacticBase + 12345;
    auto got = cuda::run_node_on_device(c.node(), "cuda.flash_attention", ins, *ref, o);
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_TRUE(tensors_close((*got)[0], (*ref)[0], 2e-2, 2e-2));
  }
}

// Batch 1 (BERT's 12 heads: fewer 64-row blocks than SMs) splits the keys over 4 warps
// (S = 128, 136) or 2 (S = 72): every tactic, fp16 and bf16, with a [1, 1, 1, S] mask (row
// tiles with row streams) and a [1, 1, S, S] one (read from global memory), every fifth key
// and, in the per-query mask, row 5 entirely at the dtype's lowest finite value.
TEST(FusedAttention, CudaKeyGroupsEveryTacticAndMask) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no CUDA device: the reference runs would compare against nothing";
  for (int64_t S : {128, 136, 72}) {
    for (bool per_query : {false, true}) {
      for (DataType dt : {DataType::kFloat16, DataType::kBFloat16}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " S" + std::to_string(S) +
                     (per_query ? " [1,1,S,S]" : " [1,1,1,S]"));
        const double lowest = dt == DataType::kFloat16 ? -65504.0 : -3.3895313892515355e38;
        BertCase bc;
        bc.B = 1, bc.S = S, bc.H = 12, bc.D = 64, bc.dt = dt;
        const int64_t rows = per_query ? S : 1;
        Tensor m = Tensor::empty(dt, {1, 1, rows, S});
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < S; ++j)
            m.set_from_double(i * S + j, (j + i) % 5 == 0 || (per_query && i == 5) ? lowest : 0.0);
        bc.mask_value = m;
        OpCase c = bc.make(29);
        expect_every_flash_tactic_matches(c);
      }
    }
  }
  // Batches past 1 on a small grid (the key groups' flat origins step the batch axis too):
  // BERT's layout at batch 2 (48 64-row blocks), and ViT's packed [S, B, 3E] QKV through
  // its eight view steps at batch 2 and 4 heads (the batch and head axes split again from
  // the merged B*H).
  for (DataType dt : {DataType::kFloat16, DataType::kBFloat16}) {
    SCOPED_TRACE(std::string(dtype_name(dt)) + " batch 2");
    BertCase bc;
    bc.B = 2, bc.S = 128, bc.H = 12, bc.D = 64, bc.dt = dt;
    OpCase c = bc.make(31);
    expect_every_flash_tactic_matches(c);
    SCOPED_TRACE("packed QKV");
    OpCase p = packed_qkv_case(128, 2, 4, 64, dt);
    expect_every_flash_tactic_matches(p);
  }
}

// FP32 with TF32 allowed (FP32 engines' default) runs head size 64 on bf16 tensor
// cores as split hi + lo operands (~16 mantissa bits): within 2e-4 of the double
// reference on every schedule (64-row blocks, keys split over 4 and 2 warps, one
// query row, a fully masked row), and not the exact FP32 kernel's bits.
TEST(FusedAttention, CudaFp32SplitBf16MatchesReferenceWithTf32Allowed) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no CUDA device: the reference runs would compare against nothing";
  struct Shape_ {
    int64_t B, S, H, D;
  };
  for (Shape_ s : {Shape_{4, 197, 12, 64}, Shape_{1, 128, 12, 64}, Shape_{1, 50, 2, 64}, Shape_{2, 1, 2, 64}}) {
    BertCase bc;
    bc.B = s.B, bc.S = s.S, bc.H = s.H, bc.D = s.D, bc.dt = DataType::kFloat32;
    OpCase c = bc.make(23);
    SCOPED_TRACE("fp32 B" + std::to_string(s.B) + " S" + std::to_string(s.S));
    c.allow_tf32().expect_all_kernels_match(2e-4, 2e-4);
    if (s.S < 32) continue;  // one key: both paths give v exactly
    auto ref = c.run("ref");
    ASSERT_TRUE(ref.ok()) << ref.status().to_string();
    std::vector<const Tensor*> ins;
    for (const auto& t : c.inputs()) ins.push_back(t ? &*t : nullptr);
    cuda::NodeRunOptions tf32, exact;
    tf32.allow_tf32 = true;
    auto split = cuda::run_node_on_device(c.node(), "cuda.flash_attention", ins, *ref, tf32);
    auto fp32 = cuda::run_node_on_device(c.node(), "cuda.flash_attention", ins, *ref, exact);
    ASSERT_TRUE(split.ok() && fp32.ok());
    EXPECT_TRUE(tensors_close((*fp32)[0], (*ref)[0], 1e-5, 1e-5)) << "TF32 not allowed: FP32 arithmetic";
    const auto* a = static_cast<const float*>((*split)[0].data());
    const auto* b = static_cast<const float*>((*fp32)[0].data());
    int64_t differ = 0;
    for (int64_t i = 0; i < (*split)[0].numel(); ++i) differ += a[i] != b[i];
    EXPECT_GT(differ, 0) << "with TF32 allowed the split-bf16 kernel should have run";
    if (s.B * s.H * ((s.S + 63) / 64) < 132) continue;
    // A large grid: each tile/occupancy tactic the builder may pick gives the reference too.
    for (int64_t tactic = 0; tactic < 5; ++tactic) {
      SCOPED_TRACE("tactic " + std::to_string(tactic));
      c.node().attrs.set(ops::kTacticAttr, Attribute::from_int(tactic));
      auto got = cuda::run_node_on_device(c.node(), "cuda.flash_attention", ins, *ref, tf32);
      ASSERT_TRUE(got.ok()) << got.status().to_string();
      EXPECT_TRUE(tensors_close((*got)[0], (*ref)[0], 2e-4, 2e-4));
    }
    c.node().attrs.erase(ops::kTacticAttr);
  }
  // Plain [B, H, S, D] operands, row 3 fully masked.
  const int64_t S = 80;
  OpCase c("FusedAttention", 1, "kiln");
  c.attr("scale", Attribute::from_float(0.125f));
  for (const char* v : {"q_view", "k_view", "v_view", "o_view"}) c.attr(v, Attribute::from_ints({}));
  c.attr("zero_masked_rows", Attribute::from_int(1));
  c.seed(6);
  for (int i = 0; i < 3; ++i) c.input(DataType::kFloat32, {1, 3, S, 64}, -2, 2);
  Tensor m = Tensor::empty(DataType::kFloat32, {S, S});
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j = 0; j < S; ++j)
      m.set_from_double(i * S + j, i == 3 || (i + j) % 5 == 0 ? -std::numeric_limits<double>::infinity() : 0.0);
  c.input(m);
  c.allow_tf32().expect_all_kernels_match(2e-4, 2e-4);
}

TEST(FusedAttention, BadViewsAreClearErrors) {
  OpCase c("FusedAttention", 1, "kiln");
  c.attr("q_view", Attribute::from_ints({99, 1, 0}));  // unknown step
  c.attr("k_view", Attribute::from_ints({}));
  c.attr("v_view", Attribute::from_ints({}));
  c.attr("o_view", Attribute::from_ints({}));
  c.input(DataType::kFloat32, {1, 1, 2, 4})
      .input(DataType::kFloat32, {1, 1, 2, 4})
      .input(DataType::kFloat32, {1, 1, 2, 4});
  auto out = c.run();
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("q_view"), std::string::npos) << out.status().to_string();

  OpCase r("FusedAttention", 1, "kiln");  // rank-3 operand without a view to 4-D
  r.attr("q_view", Attribute::from_ints({}));
  r.attr("k_view", Attribute::from_ints({}));
  r.attr("v_view", Attribute::from_ints({}));
  r.attr("o_view", Attribute::from_ints({}));
  r.input(DataType::kFloat32, {1, 2, 4}).input(DataType::kFloat32, {1, 2, 4}).input(DataType::kFloat32, {1, 2, 4});
  auto out2 = r.run();
  ASSERT_FALSE(out2.ok());
  EXPECT_NE(out2.status().message().find("rank"), std::string::npos) << out2.status().to_string();
}

TEST(FusedAttention, HostileViewsAreRefusedNotRead) {
  auto make = [](std::vector<int64_t> qv) {
    OpCase c("FusedAttention", 1, "kiln");
    c.attr("q_view", Attribute::from_ints(qv));
    c.attr("k_view", Attribute::from_ints({}));
    c.attr("v_view", Attribute::from_ints({}));
    c.attr("o_view", Attribute::from_ints({}));
    c.input(DataType::kFloat32, {1, 2, 3, 4})
        .input(DataType::kFloat32, {1, 2, 3, 4})
        .input(DataType::kFloat32, {1, 2, 3, 4});
    return c;
  };
  // A repeated axis in a perm (would read past the buffer), a gather index past the dim.
  for (auto qv : {prog({{av::kTranspose, {0, 1, 1, 3}}}), prog({{av::kUnsqueeze, {0}}, {av::kGather, {0, 5}}})}) {
    OpCase c = make(qv);
    auto out = c.run();
    ASSERT_FALSE(out.ok());
    EXPECT_NE(out.status().message().find("view"), std::string::npos) << out.status().to_string();
  }
}

TEST(AttnView, ReshapeKeepsNonContiguousDimsApart) {
  // [S=5, B=3, 3*E] buffer, E = 8 = 2 heads x 4: take q, merge (B, H) which are not
  // contiguous, split them again: the strides must come back.
  av::Layout l = av::contiguous_layout({5, 3, 24});
  std::vector<int64_t> d = {5, 3, 24};
  ASSERT_TRUE(av::apply_step_layout({av::kReshape, {}}, l, d, std::vector<int64_t>{5, 3, 3, 8}).ok());
  ASSERT_TRUE(av::apply_step_layout({av::kGather, {2, 1}}, l, d, std::nullopt).ok());  // k: offset 8
  ASSERT_TRUE(av::apply_step_layout({av::kReshape, {}}, l, d, std::vector<int64_t>{5, 6, 4}).ok());
  ASSERT_TRUE(av::apply_step_layout({av::kReshape, {}}, l, d, std::vector<int64_t>{5, 3, 2, 4}).ok());
  EXPECT_EQ(l.offset, 8);
  EXPECT_EQ(d, (std::vector<int64_t>{5, 3, 2, 4}));
  // index (s=4, b=2, h=1, d=3) -> 4*72 + 2*24 + 8 + 1*4 + 3
  int64_t off = l.offset + av::axis_offset(l.dims[0], 4) + av::axis_offset(l.dims[1], 2) +
                av::axis_offset(l.dims[2], 1) + av::axis_offset(l.dims[3], 3);
  EXPECT_EQ(off, 4 * 72 + 2 * 24 + 8 + 4 + 3);
  // A split that cuts an atom unevenly is refused.
  av::Layout u = av::contiguous_layout({6});
  std::vector<int64_t> ud = {6};
  av::Layout t = u;
  ASSERT_TRUE(av::apply_step_layout({av::kTranspose, {0}}, t, ud, std::nullopt).ok());
  EXPECT_TRUE(av::reshape_layout(u, {2, 3}));
}

}  // namespace
}  // namespace kiln::test

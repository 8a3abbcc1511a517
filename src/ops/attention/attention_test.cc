#include <cmath>
#include <limits>

#include "harness/op_harness.h"

namespace kiln::test {
namespace {

using ir::Attribute;

double at(const Tensor& t, int64_t i) { return t.get_as_double(i); }

// Naive 4-D attention: q [B,Hq,S,D], k/v [B,Hkv,T,*], mask [S,T] additive (optional).
std::vector<double> naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor* mask,
                                    bool causal, double scale) {
  int64_t B = q.dim(0), Hq = q.dim(1), S = q.dim(2), D = q.dim(3), Hk = k.dim(1), T = k.dim(2), Dv = v.dim(3);
  std::vector<double> y(B * Hq * S * Dv, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      int64_t kh = h / (Hq / Hk);
      for (int64_t i = 0; i < S; ++i) {
        std::vector<double> s(T);
        double mx = -1e300;
        for (int64_t j = 0; j < T; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += at(q, ((b * Hq + h) * S + i) * D + d) * at(k, ((b * Hk + kh) * T + j) * D + d);
          s[j] = dot * scale + (mask ? at(*mask, i * T + j) : 0.0);
          if (causal && j > i) s[j] = -INFINITY;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (double& x : s) sum += (x = std::exp(x - mx));
        for (int64_t d = 0; d < Dv; ++d) {
          double o = 0;
          for (int64_t j = 0; j < T; ++j) o += s[j] / sum * at(v, ((b * Hk + kh) * T + j) * Dv + d);
          y[((b * Hq + h) * S + i) * Dv + d] = o;
        }
      }
    }
  return y;
}

TEST(Attention, GqaCausalMaskMatchesNaive) {
  OpCase c("Attention", 23);
  c.attr("is_causal", Attribute::from_int(1));
  c.input(DataType::kFloat32, {2, 4, 3, 8}).input(DataType::kFloat32, {2, 2, 5, 8}).input(DataType::kFloat32, {2, 2, 5, 6});
  c.input(DataType::kFloat32, {3, 5}, -2, 2);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  auto& in = c.inputs();
  auto want = naive_attention(*in[0], *in[1], *in[2], &*in[3], true, 1 / std::sqrt(8.0));
  ASSERT_EQ((*out)[0].dims(), (Dims{2, 4, 3, 6}));
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR((*out)[0].get_as_double(i), want[i], 1e-5) << i;
}

TEST(Attention, ThreeDInputEqualsFourD) {
  // 3-D [B, S, H*D] is the 4-D layout transposed; results must agree.
  OpCase c4("Attention", 23);
  c4.attr("scale", Attribute::from_float(0.3f));
  c4.input(DataType::kFloat32, {1, 2, 3, 4}).input(DataType::kFloat32, {1, 2, 5, 4}).input(DataType::kFloat32, {1, 2, 5, 4});
  auto o4 = c4.run();
  ASSERT_TRUE(o4.ok()) << o4.status().to_string();
  auto to3d = [](const Tensor& t) {
    Tensor r = Tensor::empty(t.dtype(), {t.dim(0), t.dim(2), t.dim(1) * t.dim(3)});
    for (int64_t h = 0; h < t.dim(1); ++h)
      for (int64_t s = 0; s < t.dim(2); ++s)
        for (int64_t d = 0; d < t.dim(3); ++d)
          r.set_from_double((s * t.dim(1) + h) * t.dim(3) + d, t.get_as_double((h * t.dim(2) + s) * t.dim(3) + d));
    return r;
  };
  OpCase c3("Attention", 23);
  c3.attr("scale", Attribute::from_float(0.3f)).attr("q_num_heads", Attribute::from_int(2)).attr("kv_num_heads", Attribute::from_int(2));
  for (int i = 0; i < 3; ++i) c3.input(to3d(*c4.inputs()[i]));
  auto o3 = c3.run();
  ASSERT_TRUE(o3.ok()) << o3.status().to_string();
  EXPECT_TRUE(tensors_close((*o3)[0], to3d((*o4)[0]), 1e-6, 1e-6));
}

TEST(Attention, PastPresentAndFullyMaskedRow) {
  OpCase c("Attention", 23);
  c.attr("qk_matmul_output_mode", Attribute::from_int(3)).outputs(4);
  c.input(DataType::kFloat32, {1, 1, 2, 4}).input(DataType::kFloat32, {1, 1, 2, 4}).input(DataType::kFloat32, {1, 1, 2, 4});
  // Row 0 fully masked (bool false everywhere), row 1 attends all.
  auto mask = Tensor::from_vector<int>(DataType::kBool, {2, 5}, {0, 0, 0, 0, 0, 1, 1, 1, 1, 1});
  c.input(mask).input(DataType::kFloat32, {1, 1, 3, 4}).input(DataType::kFloat32, {1, 1, 3, 4});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  auto& in = c.inputs();
  const Tensor& pk = (*out)[1];
  ASSERT_EQ(pk.dims(), (Dims{1, 1, 5, 4}));
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(pk.get_as_double(i), in[4]->get_as_double(i));
  for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(pk.get_as_double(12 + i), in[1]->get_as_double(i));
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ((*out)[0].get_as_double(i), 0.0);  // masked row -> 0, not NaN
  double sum = 0;
  for (int64_t j = 0; j < 5; ++j) {
    EXPECT_EQ((*out)[3].get_as_double(j), 0.0);
    sum += (*out)[3].get_as_double(5 + j);
  }
  EXPECT_NEAR(sum, 1.0, 1e-6);
}

TEST(Attention, Errors) {
  OpCase c("Attention", 23);  // 3-D without head counts
  c.input(DataType::kFloat32, {1, 2, 8}).input(DataType::kFloat32, {1, 2, 8}).input(DataType::kFloat32, {1, 2, 8});
  EXPECT_FALSE(c.run().ok());
  OpCase d("Attention", 23);  // heads not a multiple
  d.input(DataType::kFloat32, {1, 3, 2, 4}).input(DataType::kFloat32, {1, 2, 2, 4}).input(DataType::kFloat32, {1, 2, 2, 4});
  EXPECT_FALSE(d.run().ok());
  OpCase e("Attention", 23);  // mask does not broadcast
  e.input(DataType::kFloat32, {1, 1, 2, 4}).input(DataType::kFloat32, {1, 1, 3, 4}).input(DataType::kFloat32, {1, 1, 3, 4});
  e.input(DataType::kFloat32, {3, 3});
  EXPECT_FALSE(e.run().ok());
}

TEST(FlexAttention, WithoutModifiersEqualsAttention) {
  OpCase f("FlexAttention", 1, "ai.onnx.preview");
  f.attr("scale", Attribute::from_float(0.4f));
  f.input(DataType::kFloat32, {1, 4, 3, 8}).input(DataType::kFloat32, {1, 2, 5, 8}).input(DataType::kFloat32, {1, 2, 5, 6});
  auto of = f.run();
  ASSERT_TRUE(of.ok()) << of.status().to_string();
  auto& in = f.inputs();
  auto want = naive_attention(*in[0], *in[1], *in[2], nullptr, false, 0.4);
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR((*of)[0].get_as_double(i), want[i], 1e-5) << i;
  OpCase bad("FlexAttention", 1, "ai.onnx.preview");  // rank-3 inputs are rejected
  bad.input(DataType::kFloat32, {1, 3, 8}).input(DataType::kFloat32, {1, 5, 8}).input(DataType::kFloat32, {1, 5, 8});
  EXPECT_FALSE(bad.run().ok());
}

TEST(RotaryEmbedding, MatchesNaiveWithPositionIds) {
  for (int inter = 0; inter < 2; ++inter) {
    OpCase c("RotaryEmbedding", 23);
    c.attr("interleaved", Attribute::from_int(inter)).attr("rotary_embedding_dim", Attribute::from_int(4));
    c.input(DataType::kFloat32, {1, 2, 3, 6}).input(DataType::kFloat32, {10, 2}).input(DataType::kFloat32, {10, 2});
    c.input(Tensor::from_vector<int>(DataType::kInt64, {1, 3}, {7, 0, 4}));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    auto& in = c.inputs();
    const int64_t pos[3] = {7, 0, 4};
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t s = 0; s < 3; ++s) {
        int64_t base = (h * 3 + s) * 6;
        for (int64_t i = 0; i < 2; ++i) {
          int64_t a = inter ? 2 * i : i, b = inter ? 2 * i + 1 : i + 2;
          double co = in[1]->get_as_double(pos[s] * 2 + i), si = in[2]->get_as_double(pos[s] * 2 + i);
          double x1 = in[0]->get_as_double(base + a), x2 = in[0]->get_as_double(base + b);
          EXPECT_NEAR((*out)[0].get_as_double(base + a), x1 * co - x2 * si, 1e-6);
          EXPECT_NEAR((*out)[0].get_as_double(base + b), x1 * si + x2 * co, 1e-6);
        }
        for (int64_t d = 4; d < 6; ++d) EXPECT_EQ((*out)[0].get_as_double(base + d), in[0]->get_as_double(base + d));
      }
  }
  OpCase bad("RotaryEmbedding", 23);  // position out of the cache
  bad.input(DataType::kFloat32, {1, 1, 1, 4}).input(DataType::kFloat32, {2, 2}).input(DataType::kFloat32, {2, 2});
  bad.input(Tensor::from_vector<int>(DataType::kInt64, {1, 1}, {5}));
  EXPECT_FALSE(bad.run().ok());
}

TEST(SwiGLU, MatchesFormula) {
  OpCase c("SwiGLU", 28);
  c.attr("alpha", Attribute::from_float(1.5f));
  c.input(DataType::kFloat32, {3, 4}, -3, 3).input(DataType::kFloat32, {3, 4}, -3, 3);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  for (int64_t i = 0; i < 12; ++i) {
    double a = c.inputs()[0]->get_as_double(i), b = c.inputs()[1]->get_as_double(i);
    EXPECT_NEAR((*out)[0].get_as_double(i), a / (1 + std::exp(-1.5 * a)) * b, 1e-5);
  }
  OpCase bad("SwiGLU", 28);
  bad.input(DataType::kFloat32, {3, 4}).input(DataType::kFloat32, {4, 3});
  EXPECT_FALSE(bad.run().ok());
}

TEST(TensorScatter, LinearAndCircular) {
  for (const char* mode : {"linear", "circular"}) {
    OpCase c("TensorScatter", 24);
    c.attr("mode", Attribute::from_string(mode));
    c.input(DataType::kFloat32, {2, 4, 3}).input(DataType::kFloat32, {2, 2, 3}, 5, 9);
    c.input(Tensor::from_vector<int>(DataType::kInt64, {2}, {1, std::string(mode) == "linear" ? 2 : 3}));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    auto& in = c.inputs();
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t s = 0; s < 4; ++s)
        for (int64_t d = 0; d < 3; ++d) {
          int64_t start = b == 0 ? 1 : (std::string(mode) == "linear" ? 2 : 3);
          int64_t u = ((s - start) % 4 + 4) % 4;
          double want = u < 2 ? in[1]->get_as_double((b * 2 + u) * 3 + d) : in[0]->get_as_double((b * 4 + s) * 3 + d);
          EXPECT_EQ((*out)[0].get_as_double((b * 4 + s) * 3 + d), want) << mode << b << s;
        }
  }
  OpCase bad("TensorScatter", 24);  // linear write past the end
  bad.input(DataType::kFloat32, {1, 4, 3}).input(DataType::kFloat32, {1, 2, 3});
  bad.input(Tensor::from_vector<int>(DataType::kInt64, {1}, {3}));
  EXPECT_FALSE(bad.run().ok());
}

TEST(CausalConvWithState, MatchesNaiveConv) {
  OpCase c("CausalConvWithState", 27);
  c.input(DataType::kFloat32, {2, 3, 5}).input(DataType::kFloat32, {3, 1, 3}).input(DataType::kFloat32, {3});
  c.input(DataType::kFloat32, {2, 3, 2}).outputs(2);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  auto& in = c.inputs();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t ch = 0; ch < 3; ++ch) {
      auto padded = [&](int64_t p) {
        return p < 2 ? in[3]->get_as_double((b * 3 + ch) * 2 + p) : in[0]->get_as_double((b * 3 + ch) * 5 + p - 2);
      };
      for (int64_t t = 0; t < 5; ++t) {
        double s = in[2]->get_as_double(ch);
        for (int64_t j = 0; j < 3; ++j) s += in[1]->get_as_double(ch * 3 + j) * padded(t + j);
        EXPECT_NEAR((*out)[0].get_as_double((b * 3 + ch) * 5 + t), s, 1e-5);
      }
      for (int64_t j = 0; j < 2; ++j) EXPECT_EQ((*out)[1].get_as_double((b * 3 + ch) * 2 + j), padded(5 + j));
    }
}

TEST(LinearAttention, LinearRuleIsUnnormalizedCausalAttention) {
  // With update_rule=linear, o_t = scale * sum_{s<=t} (q_t . k_s) v_s.
  OpCase c("LinearAttention", 27);
  c.attr("update_rule", Attribute::from_string("linear"))
      .attr("q_num_heads", Attribute::from_int(2))
      .attr("kv_num_heads", Attribute::from_int(1))
      .outputs(2);
  c.input(DataType::kFloat32, {1, 3, 8}).input(DataType::kFloat32, {1, 3, 4}).input(DataType::kFloat32, {1, 3, 5});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  auto& in = c.inputs();
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t m = 0; m < 5; ++m) {
        double o = 0;
        for (int64_t s = 0; s <= t; ++s) {
          double dot = 0;
          for (int64_t d = 0; d < 4; ++d) dot += in[0]->get_as_double(t * 8 + h * 4 + d) * in[1]->get_as_double(s * 4 + d);
          o += dot * in[2]->get_as_double(s * 5 + m);
        }
        EXPECT_NEAR((*out)[0].get_as_double(t * 10 + h * 5 + m), 0.5 * o, 1e-5);
      }
  ASSERT_EQ((*out)[1].dims(), (Dims{1, 1, 4, 5}));
  OpCase bad("LinearAttention", 27);  // gated_delta needs decay and beta
  bad.attr("q_num_heads", Attribute::from_int(1)).attr("kv_num_heads", Attribute::from_int(1)).outputs(2);
  bad.input(DataType::kFloat32, {1, 3, 4}).input(DataType::kFloat32, {1, 3, 4}).input(DataType::kFloat32, {1, 3, 4});
  EXPECT_FALSE(bad.run().ok());
}

}  // namespace
}  // namespace kiln::test

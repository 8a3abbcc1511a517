#include <cmath>

#include "harness/op_harness.h"

namespace kiln::test {
namespace {

using ir::Attribute;

double sigm(double x) { return 1 / (1 + std::exp(-x)); }

// Matrix-vector: rows [r0, r0+H) of M [*, K] times v.
double dot_row(const Tensor& m, int64_t row, int64_t K, const std::vector<double>& v) {
  double s = 0;
  for (int64_t k = 0; k < K; ++k) s += m.get_as_double(row * K + k) * v[k];
  return s;
}

TEST(Rnn, SimpleRnnMatchesNaiveWithSequenceLens) {
  const int64_t S = 3, N = 2, I = 3, H = 4;
  OpCase c("RNN", 14);
  c.attr("hidden_size", Attribute::from_int(H)).outputs(2);
  c.input(DataType::kFloat32, {S, N, I}).input(DataType::kFloat32, {1, H, I}).input(DataType::kFloat32, {1, H, H});
  c.input(DataType::kFloat32, {1, 2 * H}).input(Tensor::from_vector<int>(DataType::kInt32, {N}, {3, 2}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  auto& in = c.inputs();
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> h(H, 0.0);
    int64_t len = n == 0 ? 3 : 2;
    for (int64_t t = 0; t < S; ++t) {
      std::vector<double> x(I), nh(H);
      for (int64_t i = 0; i < I; ++i) x[i] = in[0]->get_as_double((t * N + n) * I + i);
      for (int64_t j = 0; j < H; ++j)
        nh[j] = std::tanh(dot_row(*in[1], j, I, x) + dot_row(*in[2], j, H, h) + in[3]->get_as_double(j) +
                          in[3]->get_as_double(H + j));
      for (int64_t j = 0; j < H; ++j) {
        double y = (*out)[0].get_as_double((t * N + n) * H + j);
        if (t < len) EXPECT_NEAR(y, nh[j], 1e-5);
        else EXPECT_EQ(y, 0.0);  // past the sequence end
      }
      if (t < len) h = nh;
    }
    for (int64_t j = 0; j < H; ++j) EXPECT_NEAR((*out)[1].get_as_double(n * H + j), h[j], 1e-5);
  }
}

TEST(Rnn, GruOneStepMatchesNaive) {
  for (int lbr = 0; lbr < 2; ++lbr) {
    const int64_t I = 3, H = 2;
    OpCase c("GRU", 14);
    c.attr("hidden_size", Attribute::from_int(H)).attr("linear_before_reset", Attribute::from_int(lbr)).outputs(2);
    c.input(DataType::kFloat32, {1, 1, I}).input(DataType::kFloat32, {1, 3 * H, I}).input(DataType::kFloat32, {1, 3 * H, H});
    c.input(DataType::kFloat32, {1, 6 * H}).no_input().input(DataType::kFloat32, {1, 1, H});
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    auto& in = c.inputs();
    std::vector<double> x(I), h0(H), rh(H);
    for (int64_t i = 0; i < I; ++i) x[i] = in[0]->get_as_double(i);
    for (int64_t i = 0; i < H; ++i) h0[i] = in[5]->get_as_double(i);
    auto wb = [&](int64_t g) { return in[3]->get_as_double(g); };
    auto rb = [&](int64_t g) { return in[3]->get_as_double(3 * H + g); };
    std::vector<double> z(H), r(H);
    for (int64_t j = 0; j < H; ++j) {
      z[j] = sigm(dot_row(*in[1], j, I, x) + dot_row(*in[2], j, H, h0) + wb(j) + rb(j));
      r[j] = sigm(dot_row(*in[1], H + j, I, x) + dot_row(*in[2], H + j, H, h0) + wb(H + j) + rb(H + j));
      rh[j] = r[j] * h0[j];
    }
    for (int64_t j = 0; j < H; ++j) {
      double rec = lbr ? r[j] * (dot_row(*in[2], 2 * H + j, H, h0) + rb(2 * H + j)) : dot_row(*in[2], 2 * H + j, H, rh) + rb(2 * H + j);
      double cand = std::tanh(dot_row(*in[1], 2 * H + j, I, x) + wb(2 * H + j) + rec);
      EXPECT_NEAR((*out)[1].get_as_double(j), (1 - z[j]) * cand + z[j] * h0[j], 1e-5) << lbr;
    }
  }
}

TEST(Rnn, LstmBidirectionalReverseIsForwardOnFlippedInput) {
  const int64_t S = 4, N = 2, I = 3, H = 3;
  OpCase bi("LSTM", 14);
  bi.attr("direction", Attribute::from_string("bidirectional")).attr("hidden_size", Attribute::from_int(H)).outputs(3);
  bi.input(DataType::kFloat32, {S, N, I}).input(DataType::kFloat32, {2, 4 * H, I}).input(DataType::kFloat32, {2, 4 * H, H});
  bi.input(DataType::kFloat32, {2, 8 * H}).no_input().no_input().no_input().input(DataType::kFloat32, {2, 3 * H});
  auto ob = bi.run();
  ASSERT_TRUE(ob.ok()) << ob.status().to_string();
  auto& in = bi.inputs();
  auto slice = [](const Tensor& t, int64_t d) {  // direction d of a [2, ...] tensor, as [1, ...]
    Dims dims = t.dims();
    dims[0] = 1;
    Tensor r = Tensor::empty(t.dtype(), dims);
    for (int64_t i = 0; i < r.numel(); ++i) r.set_from_double(i, t.get_as_double(d * r.numel() + i));
    return r;
  };
  Tensor flipped = Tensor::empty(DataType::kFloat32, {S, N, I});
  for (int64_t t = 0; t < S; ++t)
    for (int64_t i = 0; i < N * I; ++i) flipped.set_from_double(t * N * I + i, in[0]->get_as_double((S - 1 - t) * N * I + i));
  OpCase fw("LSTM", 14);
  fw.attr("hidden_size", Attribute::from_int(H)).outputs(3);
  fw.input(flipped).input(slice(*in[1], 1)).input(slice(*in[2], 1)).input(slice(*in[3], 1));
  fw.no_input().no_input().no_input().input(slice(*in[7], 1));
  auto of = fw.run();
  ASSERT_TRUE(of.ok()) << of.status().to_string();
  for (int64_t t = 0; t < S; ++t)
    for (int64_t i = 0; i < N * H; ++i)
      EXPECT_NEAR((*ob)[0].get_as_double(((S - 1 - t) * 2 + 1) * N * H + i), (*of)[0].get_as_double(t * N * H + i), 1e-6);
  for (int64_t i = 0; i < N * H; ++i) {
    EXPECT_NEAR((*ob)[1].get_as_double(N * H + i), (*of)[1].get_as_double(i), 1e-6);
    EXPECT_NEAR((*ob)[2].get_as_double(N * H + i), (*of)[2].get_as_double(i), 1e-6);
  }
}

TEST(Rnn, Errors) {
  OpCase c("LSTM", 14);  // W has the wrong gate count
  c.attr("hidden_size", Attribute::from_int(2));
  c.input(DataType::kFloat32, {2, 1, 3}).input(DataType::kFloat32, {1, 6, 3}).input(DataType::kFloat32, {1, 8, 2});
  EXPECT_FALSE(c.run().ok());
  OpCase d("RNN", 14);  // unknown activation
  ir::Attribute acts;
  acts.kind = ir::Attribute::Kind::kStrings;
  acts.strings = {"Swoosh"};
  d.attr("activations", acts);
  d.input(DataType::kFloat32, {2, 1, 3}).input(DataType::kFloat32, {1, 2, 3}).input(DataType::kFloat32, {1, 2, 2});
  EXPECT_FALSE(d.run().ok());
}

}  // namespace
}  // namespace kiln::test

#include <cmath>
#include <string>
#include <vector>

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
        if (t < len)
          EXPECT_NEAR(y, nh[j], 1e-5);
        else
          EXPECT_EQ(y, 0.0);  // past the sequence end
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
    c.input(DataType::kFloat32, {1, 1, I})
        .input(DataType::kFloat32, {1, 3 * H, I})
        .input(DataType::kFloat32, {1, 3 * H, H});
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
      double rec = lbr ? r[j] * (dot_row(*in[2], 2 * H + j, H, h0) + rb(2 * H + j))
                       : dot_row(*in[2], 2 * H + j, H, rh) + rb(2 * H + j);
      double cand = std::tanh(dot_row(*in[1], 2 * H + j, I, x) + wb(2 * H + j) + rec);
      EXPECT_NEAR((*out)[1].get_as_double(j), (1 - z[j]) * cand + z[j] * h0[j], 1e-5) << lbr;
    }
  }
}

TEST(Rnn, LstmBidirectionalReverseIsForwardOnFlippedInput) {
  const int64_t S = 4, N = 2, I = 3, H = 3;
  OpCase bi("LSTM", 14);
  bi.attr("direction", Attribute::from_string("bidirectional")).attr("hidden_size", Attribute::from_int(H)).outputs(3);
  bi.input(DataType::kFloat32, {S, N, I})
      .input(DataType::kFloat32, {2, 4 * H, I})
      .input(DataType::kFloat32, {2, 4 * H, H});
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
    for (int64_t i = 0; i < N * I; ++i)
      flipped.set_from_double(t * N * I + i, in[0]->get_as_double((S - 1 - t) * N * I + i));
  OpCase fw("LSTM", 14);
  fw.attr("hidden_size", Attribute::from_int(H)).outputs(3);
  fw.input(flipped).input(slice(*in[1], 1)).input(slice(*in[2], 1)).input(slice(*in[3], 1));
  fw.no_input().no_input().no_input().input(slice(*in[7], 1));
  auto of = fw.run();
  ASSERT_TRUE(of.ok()) << of.status().to_string();
  for (int64_t t = 0; t < S; ++t)
    for (int64_t i = 0; i < N * H; ++i)
      EXPECT_NEAR((*ob)[0].get_as_double(((S - 1 - t) * 2 + 1) * N * H + i), (*of)[0].get_as_double(t * N * H + i),
                  1e-6);
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

// ---------------------------------------------------------------- CUDA kernels vs the reference

ir::Attribute strings(std::vector<std::string> v) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::kStrings;
  a.strings = std::move(v);
  return a;
}

struct RnnCase {
  const char* name;
  const char* op;
  const char* direction = "forward";
  int64_t layout = 0;
  int64_t S = 5, N = 3, I = 7, H = 33;
  bool bias = true, lens = false, init = false, peep = false;
  int64_t lbr = -1;  // GRU linear_before_reset (-1: not set)
  float clip = 0.f;  // 0: not set
  int64_t input_forget = -1;
  std::vector<std::string> activations;
  std::vector<float> alphas, betas;
  bool y = true;  // request Y
};

int64_t gates(const std::string& op) { return op == "RNN" ? 1 : op == "GRU" ? 3 : 4; }

void expect_rnn_kernels_match(const RnnCase& r, DataType dt, double rtol, double atol) {
  const int64_t D = std::string(r.direction) == "bidirectional" ? 2 : 1, G = gates(r.op);
  const int64_t S = r.S, N = r.N, H = r.H;
  const bool lstm = std::string(r.op) == "LSTM";
  OpCase c(r.op, 14);
  c.attr("hidden_size", Attribute::from_int(H)).attr("direction", Attribute::from_string(r.direction));
  c.attr("layout", Attribute::from_int(r.layout));
  if (r.lbr >= 0) c.attr("linear_before_reset", Attribute::from_int(r.lbr));
  if (r.clip > 0) c.attr("clip", Attribute::from_float(r.clip));
  if (r.input_forget >= 0) c.attr("input_forget", Attribute::from_int(r.input_forget));
  if (!r.activations.empty()) c.attr("activations", strings(r.activations));
  if (!r.alphas.empty()) c.attr("activation_alpha", Attribute::from_floats(r.alphas));
  if (!r.betas.empty()) c.attr("activation_beta", Attribute::from_floats(r.betas));
  c.outputs(lstm ? 3 : 2);
  c.input(dt, r.layout ? Dims{N, S, r.I} : Dims{S, N, r.I});
  c.input(dt, {D, G * H, r.I}, -0.5, 0.5).input(dt, {D, G * H, H}, -0.5, 0.5);
  if (r.bias)
    c.input(dt, {D, 2 * G * H});
  else
    c.no_input();
  if (r.lens) {
    std::vector<int> l;
    for (int64_t n = 0; n < N; ++n) l.push_back(static_cast<int>((n * 2 + 1) % (S + 1)));  // includes 0 when N > S/2
    l[0] = static_cast<int>(S);
    c.input(Tensor::from_vector<int>(DataType::kInt32, {N}, l));
  } else if (r.init || r.peep) {
    c.no_input();
  }
  const Dims state = r.layout ? Dims{N, D, H} : Dims{D, N, H};
  if (r.init) {
    c.input(dt, state);
    if (lstm) c.input(dt, state);
  } else if (r.peep) {
    c.no_input().no_input();
  }
  if (r.peep) c.input(dt, {D, 3 * H});
  if (!r.y) c.node().outputs[0] = nullptr;
  EXPECT_GE(c.expect_all_kernels_match(rtol, atol), gpu_kernels()) << r.name << " " << dtype_name(dt);
}

const Tol kRnnTols[] = {
    {DataType::kFloat32, 1e-4, 1e-5}, {DataType::kFloat16, 1e-2, 1e-2}, {DataType::kBFloat16, 3e-2, 3e-2}};

TEST(Rnn, CudaKernelsMatchReference) {
  std::vector<RnnCase> cases;
  auto add = [&](RnnCase r) { cases.push_back(std::move(r)); };
  for (const char* op : {"RNN", "GRU", "LSTM"})
    for (const char* dir : {"forward", "reverse", "bidirectional"})
      for (int64_t layout : {0, 1}) {
        RnnCase r;
        r.name = "defaults";
        r.op = op, r.direction = dir, r.layout = layout;
        add(r);
        r.name = "sequence_lens_and_initial_state";
        r.lens = true, r.init = true;
        add(r);
      }
  RnnCase r;
  r.op = "GRU";
  r.name = "gru_linear_before_reset";
  r.lbr = 1, r.direction = "bidirectional", r.lens = true, r.init = true;
  add(r);
  r.name = "gru_linear_before_reset_layout1_clip";
  r.layout = 1, r.clip = 0.7f;
  add(r);
  r = RnnCase{};
  r.op = "LSTM";
  r.name = "lstm_peepholes_bidirectional_lens";
  r.direction = "bidirectional", r.peep = true, r.lens = true, r.init = true;
  add(r);
  r.name = "lstm_input_forget_peepholes_layout1";
  r.layout = 1, r.input_forget = 1, r.lens = false;
  add(r);
  r = RnnCase{};
  r.op = "LSTM";
  r.name = "lstm_clip_no_bias_no_y";
  r.clip = 0.5f, r.bias = false, r.y = false;
  add(r);
  r = RnnCase{};
  r.op = "RNN";
  r.name = "rnn_relu_clip";
  r.activations = {"Relu"}, r.clip = 1.5f;
  add(r);
  r = RnnCase{};
  r.op = "RNN";
  r.name = "rnn_bidirectional_affine_and_leakyrelu_alphas";
  r.direction = "bidirectional", r.activations = {"Affine", "LeakyRelu"}, r.alphas = {0.8f, 0.1f}, r.betas = {0.3f};
  add(r);
  r = RnnCase{};
  r.op = "GRU";
  r.name = "gru_hardsigmoid_softsign";
  r.activations = {"HardSigmoid", "Softsign"}, r.alphas = {0.3f}, r.betas = {0.4f};
  add(r);
  r = RnnCase{};
  r.op = "LSTM";
  r.name = "lstm_scaledtanh_softplus_elu_thresholdedrelu";
  r.direction = "bidirectional";
  r.activations = {"Sigmoid", "ScaledTanh", "Softplus", "HardSigmoid", "Elu", "ThresholdedRelu"};
  r.alphas = {1.f, 0.9f, 1.f, 0.25f, 0.7f, 0.1f}, r.betas = {0.f, 1.1f, 0.f, 0.5f, 0.f, 0.f};
  add(r);
  r = RnnCase{};
  r.op = "LSTM";
  r.name = "lstm_batch_over_one_tile_hidden_small";
  r.N = 37, r.H = 5, r.S = 4, r.I = 20, r.lens = true;
  add(r);
  r = RnnCase{};
  r.op = "GRU";
  r.name = "gru_single_step_batch_one";
  r.S = 1, r.N = 1, r.I = 1, r.H = 1;
  add(r);
  r = RnnCase{};
  r.op = "RNN";
  r.name = "rnn_empty_sequence";
  r.S = 0, r.init = true;
  add(r);
  for (const RnnCase& c : cases)
    for (const Tol& t : kRnnTols) expect_rnn_kernels_match(c, t.dtype, t.rtol, t.atol);
}

}  // namespace
}  // namespace kiln::test

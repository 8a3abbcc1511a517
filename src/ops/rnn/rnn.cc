// RNN, GRU and LSTM (opsets 7-22): recurrences over a sequence in forward, reverse
// or both directions, with per-batch sequence_lens, initial states, clip,
// configurable activations, GRU linear_before_reset and LSTM peepholes/input_forget.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <iterator>
#include <string>

#include "ops/common.h"
#include "ops/rnn/rnn_attrs.h"

namespace kiln::ops {
namespace rnn {
namespace {

// Canonical spelling, default alpha/beta; false if unknown.
bool canonical_activation(const std::string& in, Activation& a) {
  static const char* kNames[] = {"Tanh",       "Sigmoid",     "Relu", "Affine",   "LeakyRelu", "ThresholdedRelu",
                                 "ScaledTanh", "HardSigmoid", "Elu",  "Softsign", "Softplus"};
  std::string lower = in;
  for (char& c : lower) c = static_cast<char>(std::tolower(c));
  for (int i = 0; i < static_cast<int>(std::size(kNames)); ++i) {
    std::string l = kNames[i];
    for (char& c : l) c = static_cast<char>(std::tolower(c));
    if (l != lower) continue;
    a.kind = static_cast<ActKind>(i);
    switch (a.kind) {
      case ActKind::kLeakyRelu:
        a.alpha = 0.01;
        break;
      case ActKind::kThresholdedRelu:
      case ActKind::kElu:
        a.alpha = 1.0;
        break;
      case ActKind::kScaledTanh:
        a.alpha = 1.0, a.beta = 1.0;
        break;
      case ActKind::kAffine:
        a.alpha = 1.0, a.beta = 0.0;
        break;
      case ActKind::kHardSigmoid:
        a.alpha = 0.2, a.beta = 0.5;
        break;
      default:
        break;
    }
    return true;
  }
  return false;
}

}  // namespace

Result<std::vector<Activation>> parse_activations(const ir::Node& node, Cell cell, int dirs) {
  const auto& a = node.attrs;
  std::vector<std::string> names;
  if (auto* at = a.find("activations")) names = at->strings;
  const int nf = num_funcs(cell);
  if (names.empty()) {
    std::vector<std::string> def = cell == Cell::kRnn   ? std::vector<std::string>{"Tanh"}
                                   : cell == Cell::kGru ? std::vector<std::string>{"Sigmoid", "Tanh"}
                                                        : std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"};
    for (int d = 0; d < dirs; ++d) names.insert(names.end(), def.begin(), def.end());
  } else if (static_cast<int>(names.size()) == nf && dirs == 2) {
    std::vector<std::string> twice = names;
    names.insert(names.end(), twice.begin(), twice.end());
  }
  if (static_cast<int>(names.size()) != nf * dirs)
    return Status(ErrorCode::kInvalidModel, "node " + node.describe() + ": expected " + std::to_string(nf * dirs) +
                                                " activations, got " + std::to_string(names.size()));
  auto alphas = a.get_floats("activation_alpha"), betas = a.get_floats("activation_beta");
  std::vector<Activation> out(names.size());
  size_t ai = 0, bi = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!canonical_activation(names[i], out[i]))
      return Status(ErrorCode::kUnsupported, "node " + node.describe() + ": unknown activation '" + names[i] + "'");
    const ActKind k = out[i].kind;
    bool takes_alpha = k == ActKind::kAffine || k == ActKind::kLeakyRelu || k == ActKind::kThresholdedRelu ||
                       k == ActKind::kScaledTanh || k == ActKind::kHardSigmoid || k == ActKind::kElu;
    bool takes_beta = k == ActKind::kAffine || k == ActKind::kScaledTanh || k == ActKind::kHardSigmoid;
    if (alphas.size() == names.size())
      out[i].alpha = alphas[i];
    else if (takes_alpha && ai < alphas.size())
      out[i].alpha = alphas[ai++];
    if (betas.size() == names.size())
      out[i].beta = betas[i];
    else if (takes_beta && bi < betas.size())
      out[i].beta = betas[bi++];
  }
  return out;
}

}  // namespace rnn

namespace {

using namespace rnn;  // NOLINT(google-build-using-namespace)

template <Cell C>
Status infer_rnn(InferContext& ctx) {
  DataType t = ctx.input_dtype(0);
  if (t != DataType::kFloat32 && t != DataType::kFloat64 && t != DataType::kFloat16 && t != DataType::kBFloat16)
    return ctx.unsupported(std::string("dtype ") + dtype_name(t) + " is not supported");
  const auto& a = ctx.attrs();
  std::string dir = a.get_string("direction", "forward");
  if (dir != "forward" && dir != "reverse" && dir != "bidirectional")
    return ctx.error("direction must be forward, reverse or bidirectional");
  auto acts = parse_activations(ctx.node(), C, num_directions(dir));
  if (!acts.ok()) return acts.status();
  int64_t layout = a.get_int("layout", 0);
  if (layout != 0 && layout != 1) return ctx.error("layout must be 0 or 1");
  const Shape* x = ctx.input_shape(0);
  const Shape* r = ctx.input_shape(2);
  if (x && x->size() != 3) return ctx.error("X must be 3-D");
  if (r && r->size() != 3) return ctx.error("R must be 3-D");
  Dim hidden = a.has("hidden_size") ? Dim(a.get_int("hidden_size", 0)) : (r ? (*r)[2] : Dim::unknown());
  Dim dirs(num_directions(dir));
  Dim seq = x ? (*x)[layout ? 1 : 0] : Dim::unknown();
  Dim batch = x ? (*x)[layout ? 0 : 1] : Dim::unknown();
  if (layout == 0) {
    ctx.set_output(0, t, Shape{seq, dirs, batch, hidden});
    ctx.set_output(1, t, Shape{dirs, batch, hidden});
    ctx.set_output(2, t, Shape{dirs, batch, hidden});
  } else {
    ctx.set_output(0, t, Shape{batch, seq, dirs, hidden});
    ctx.set_output(1, t, Shape{batch, dirs, hidden});
    ctx.set_output(2, t, Shape{batch, dirs, hidden});
  }
  return Status();
}

std::vector<double> doubles(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[static_cast<size_t>(i)] = t.get_as_double(i);
  return v;
}

template <Cell C>
Status ref_rnn(KernelContext& ctx) {
  const auto& a = ctx.attrs();
  const std::string dir = a.get_string("direction", "forward");
  const int64_t D = num_directions(dir);
  const int64_t layout = a.get_int("layout", 0);
  const int64_t G = gates_of(C);
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  const Tensor& R = ctx.input(2);
  if (X.rank() != 3 || W.rank() != 3 || R.rank() != 3) return ctx.error("X, W and R must be 3-D");
  const int64_t S = layout ? X.dim(1) : X.dim(0), N = layout ? X.dim(0) : X.dim(1), I = X.dim(2);
  const int64_t H = R.dim(2);
  if (a.has("hidden_size") && a.get_int("hidden_size", 0) != H) return ctx.error("hidden_size does not match R");
  if (W.dims() != Dims{D, G * H, I}) return ctx.error("W must be " + dims_to_string({D, G * H, I}));
  if (R.dims() != Dims{D, G * H, H}) return ctx.error("R must be " + dims_to_string({D, G * H, H}));
  auto acts_r = parse_activations(ctx.node(), C, static_cast<int>(D));
  if (!acts_r.ok()) return acts_r.status();
  const auto& acts = *acts_r;
  const double clip = a.has("clip") ? a.get_float("clip", 0.f) : 0.0;
  const bool lbr = a.get_int("linear_before_reset", 0) != 0;
  const bool input_forget = a.get_int("input_forget", 0) != 0;

  auto x = doubles(X), w = doubles(W), r = doubles(R);
  std::vector<double> bias(static_cast<size_t>(D * 2 * G * H), 0.0);
  if (ctx.has_input(3)) {
    if (ctx.input(3).dims() != Dims{D, 2 * G * H}) return ctx.error("B must be " + dims_to_string({D, 2 * G * H}));
    bias = doubles(ctx.input(3));
  }
  std::vector<int64_t> lens(static_cast<size_t>(N), S);
  if (ctx.has_input(4)) {
    lens = ctx.input(4).to_int64_vector();
    if (static_cast<int64_t>(lens.size()) != N) return ctx.error("sequence_lens must be [batch_size]");
    for (int64_t l : lens)
      if (l < 0 || l > S) return ctx.error("sequence_lens value " + std::to_string(l) + " is outside [0, seq_length]");
  }
  // States are kept as [D, N, H] whatever the layout.
  const Dims state_dims = layout ? Dims{N, D, H} : Dims{D, N, H};
  auto load_state = [&](int idx, std::vector<double>& s) -> Status {
    s.assign(static_cast<size_t>(D * N * H), 0.0);
    if (!ctx.has_input(idx)) return Status();
    const Tensor& t = ctx.input(idx);
    if (t.dims() != state_dims) return ctx.error("initial state must be " + dims_to_string(state_dims));
    for (int64_t d = 0; d < D; ++d)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t h = 0; h < H; ++h)
          s[(d * N + n) * H + h] = t.get_as_double(layout ? (n * D + d) * H + h : (d * N + n) * H + h);
    return Status();
  };
  std::vector<double> h_state, c_state, peep(static_cast<size_t>(D * 3 * H), 0.0);
  if (Status s = load_state(5, h_state); !s.ok()) return s;
  if (C == Cell::kLstm) {
    if (Status s = load_state(6, c_state); !s.ok()) return s;
    if (ctx.has_input(7)) {
      if (ctx.input(7).dims() != Dims{D, 3 * H}) return ctx.error("P must be " + dims_to_string({D, 3 * H}));
      peep = doubles(ctx.input(7));
    }
  }
  const int64_t nf = num_funcs(C);
  std::vector<double> Y(static_cast<size_t>(S * D * N * H), 0.0);  // [S, D, N, H]
  std::vector<double> gx(G * H), gh(G * H);
  auto clipv = [&](double v) { return clip > 0 ? std::clamp(v, -clip, clip) : v; };

  for (int64_t d = 0; d < D; ++d) {
    const bool reverse = dir == "reverse" || d == 1;
    const Activation* f = &acts[d * nf];
    const double* Wd = &w[d * G * H * I];
    const double* Rd = &r[d * G * H * H];
    const double* Wb = &bias[d * 2 * G * H];
    const double* Rb = Wb + G * H;
    for (int64_t n = 0; n < N; ++n) {
      double* Ht = &h_state[(d * N + n) * H];
      double* Ct = C == Cell::kLstm ? &c_state[(d * N + n) * H] : nullptr;
      for (int64_t step = 0; step < lens[n]; ++step) {
        const int64_t t = reverse ? lens[n] - 1 - step : step;
        const double* xt = &x[layout ? (n * S + t) * I : (t * N + n) * I];
        for (int64_t g = 0; g < G * H; ++g) {
          double sx = Wb[g], sh = Rb[g];
          for (int64_t i = 0; i < I; ++i) sx += Wd[g * I + i] * xt[i];
          for (int64_t i = 0; i < H; ++i) sh += Rd[g * H + i] * Ht[i];
          gx[g] = sx, gh[g] = sh;
        }
        std::vector<double> nh(H);
        if (C == Cell::kRnn) {
          for (int64_t h = 0; h < H; ++h) nh[h] = f[0](clipv(gx[h] + gh[h]));
        } else if (C == Cell::kGru) {
          // Gate order z, r, h.
          std::vector<double> z(H), rr(H);
          for (int64_t h = 0; h < H; ++h) {
            z[h] = f[0](clipv(gx[h] + gh[h]));
            rr[h] = f[0](clipv(gx[H + h] + gh[H + h]));
          }
          for (int64_t h = 0; h < H; ++h) {
            double hh;
            if (lbr) {
              hh = gx[2 * H + h] + rr[h] * gh[2 * H + h];
            } else {
              // (r . H_{t-1}) Rh + Rbh: the recurrence sees the reset state.
              double s = Rb[2 * H + h];
              for (int64_t i = 0; i < H; ++i) s += Rd[(2 * H + h) * H + i] * rr[i] * Ht[i];
              hh = gx[2 * H + h] + s;
            }
            double cand = f[1](clipv(hh));
            nh[h] = (1 - z[h]) * cand + z[h] * Ht[h];
          }
        } else {
          // Gate order i, o, f, c; peepholes i, o, f.
          const double* P = &peep[d * 3 * H];
          for (int64_t h = 0; h < H; ++h) {
            double ig = f[0](clipv(gx[h] + gh[h] + P[h] * Ct[h]));
            double fg = input_forget ? 1 - ig : f[0](clipv(gx[2 * H + h] + gh[2 * H + h] + P[2 * H + h] * Ct[h]));
            double cg = f[1](clipv(gx[3 * H + h] + gh[3 * H + h]));
            double c = fg * Ct[h] + ig * cg;
            double og = f[0](clipv(gx[H + h] + gh[H + h] + P[H + h] * c));
            Ct[h] = c;
            nh[h] = og * f[2](c);
          }
        }
        for (int64_t h = 0; h < H; ++h) {
          Ht[h] = nh[h];
          Y[((t * D + d) * N + n) * H + h] = nh[h];
        }
      }
    }
  }
  if (ctx.has_output(0)) {
    Tensor& out = ctx.output(0);
    for (int64_t t = 0; t < S; ++t)
      for (int64_t d = 0; d < D; ++d)
        for (int64_t n = 0; n < N; ++n)
          for (int64_t h = 0; h < H; ++h)
            out.set_from_double(layout ? ((n * S + t) * D + d) * H + h : ((t * D + d) * N + n) * H + h,
                                Y[((t * D + d) * N + n) * H + h]);
  }
  auto store_state = [&](int idx, const std::vector<double>& s) {
    if (!ctx.has_output(idx)) return;
    Tensor& out = ctx.output(idx);
    for (int64_t d = 0; d < D; ++d)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t h = 0; h < H; ++h)
          out.set_from_double(layout ? (n * D + d) * H + h : (d * N + n) * H + h, s[(d * N + n) * H + h]);
  };
  store_state(1, h_state);
  if (C == Cell::kLstm) store_state(2, c_state);
  return Status();
}

}  // namespace

void register_rnn_ops(OpRegistry& r) {
  r.add({.name = "RNN", .infer = infer_rnn<Cell::kRnn>, .ref = ref_rnn<Cell::kRnn>, .min_opset = 7});
  r.add({.name = "GRU", .infer = infer_rnn<Cell::kGru>, .ref = ref_rnn<Cell::kGru>, .min_opset = 7});
  r.add({.name = "LSTM", .infer = infer_rnn<Cell::kLstm>, .ref = ref_rnn<Cell::kLstm>, .min_opset = 7});
}

}  // namespace kiln::ops

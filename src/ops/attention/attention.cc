// Attention (opsets 23-25): softmax(Q*K^T*scale [softcap] + bias) * V with
// 3-D/4-D inputs, GQA/MQA, bool/float masks, causal and sliding-window masks,
// an internal KV cache (past/present) and an external one (nonpad_kv_seqlen).
#include <cmath>
#include <limits>

#include "ops/attention/attn_util.h"

namespace kiln::ops {
namespace {

using attn::round_to;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Divides a hidden dim by a head count when known.
Dim div_dim(const Dim& d, int64_t n) { return d.known() && n > 0 ? Dim(d.value / n) : Dim::unknown(); }

Status infer_attention(InferContext& ctx) {
  for (int i = 0; i < 3; ++i) {
    auto s = require_shape(ctx, i);
    if (!s.ok()) return s.status();
  }
  const Shape& q = *ctx.input_shape(0);
  const Shape& k = *ctx.input_shape(1);
  const Shape& v = *ctx.input_shape(2);
  if ((q.size() != 3 && q.size() != 4) || k.size() != q.size() || v.size() != q.size())
    return ctx.error("Q, K and V must all be 3-D or all be 4-D");
  for (int i = 0; i < 3; ++i)
    if (!attn::is_float_dtype(ctx.input_dtype(i)))
      return ctx.unsupported(std::string("dtype ") + dtype_name(ctx.input_dtype(i)) + " of input " +
                             std::to_string(i) + " is not supported");
  const auto& a = ctx.attrs();
  int64_t qh = a.get_int("q_num_heads", 0), kvh = a.get_int("kv_num_heads", 0);
  int64_t mode = a.get_int("qk_matmul_output_mode", 0);
  if (mode < 0 || mode > 3) return ctx.error("qk_matmul_output_mode must be 0..3");
  if (a.get_int("left_window_size", -1) < -1 || a.get_int("right_window_size", -1) < -1)
    return ctx.error("window sizes must be -1 or nonnegative");
  Dim B = q[0], Sq, Hq, Hkv, Dk, Dv, Skv;
  if (q.size() == 3) {
    if (qh <= 0 || kvh <= 0) return ctx.error("3-D inputs need positive q_num_heads and kv_num_heads");
    if (qh % kvh) return ctx.error("q_num_heads must be a multiple of kv_num_heads");
    for (auto [d, n] : {std::pair{q[2], qh}, {k[2], kvh}, {v[2], kvh}})
      if (d.known() && d.value % n) return ctx.error("hidden size " + d.to_string() + " is not divisible by " +
                                                     std::to_string(n) + " heads");
    Sq = q[1], Skv = k[1], Hq = qh, Hkv = kvh, Dk = div_dim(q[2], qh), Dv = div_dim(v[2], kvh);
  } else {
    Hq = q[1], Hkv = k[1], Sq = q[2], Skv = k[2], Dk = q[3], Dv = v[3];
    if (Hq.known() && Hkv.known() && (Hkv.value == 0 || Hq.value % Hkv.value))
      return ctx.error("query heads must be a multiple of key/value heads");
    if (q[3].known() && k[3].known() && q[3].value != k[3].value) return ctx.error("Q and K head sizes differ");
  }
  Dim total = Skv;
  bool has_past = ctx.has_input(4) || ctx.has_input(5);
  if (has_past) {
    if (!ctx.has_input(4) || !ctx.has_input(5)) return ctx.error("past_key and past_value must be given together");
    if (ctx.has_input(6)) return ctx.error("nonpad_kv_seqlen cannot be combined with past_key/past_value");
    const Shape* pk = ctx.input_shape(4);
    const Shape* pv = ctx.input_shape(5);
    if ((pk && pk->size() != 4) || (pv && pv->size() != 4)) return ctx.error("past_key/past_value must be 4-D");
    total = pk ? dim_add((*pk)[2], Skv) : Dim::unknown();
  }
  DataType t = ctx.input_dtype(0);
  if (q.size() == 3)
    ctx.set_output(0, t, Shape{B, Sq, dim_mul(Hq, Dv)});
  else
    ctx.set_output(0, t, Shape{B, Hq, Sq, Dv});
  ctx.set_output(1, t, Shape{B, Hkv, total, Dk});
  ctx.set_output(2, ctx.input_dtype(2), Shape{B, Hkv, total, Dv});
  ctx.set_output(3, t, Shape{B, Hq, Sq, total});
  return Status();
}

struct Geometry {
  int64_t B, Hq, Hkv, Sq, Skv, P, T, Dk, Dv;
  bool three_d;
};

// Element offset of (b, h, s, d) in a 3-D [B, S, H*D] or 4-D [B, H, S, D] input.
inline int64_t at(bool three_d, int64_t H, int64_t S, int64_t D, int64_t b, int64_t h, int64_t s, int64_t d) {
  return three_d ? ((b * S + s) * H + h) * D + d : ((b * H + h) * S + s) * D + d;
}

Status ref_attention(KernelContext& ctx) {
  const Tensor& Q = ctx.input(0);
  const Tensor& K = ctx.input(1);
  const Tensor& V = ctx.input(2);
  const auto& a = ctx.attrs();
  Geometry g{};
  g.three_d = Q.rank() == 3;
  g.B = Q.dim(0);
  if (g.three_d) {
    g.Hq = a.get_int("q_num_heads", 0), g.Hkv = a.get_int("kv_num_heads", 0);
    g.Sq = Q.dim(1), g.Skv = K.dim(1), g.Dk = Q.dim(2) / g.Hq, g.Dv = V.dim(2) / g.Hkv;
    if (K.dim(2) != g.Hkv * g.Dk || V.dim(1) != g.Skv || K.dim(0) != g.B || V.dim(0) != g.B)
      return ctx.error("K/V shapes do not match Q and the head counts");
  } else {
    g.Hq = Q.dim(1), g.Hkv = K.dim(1), g.Sq = Q.dim(2), g.Skv = K.dim(2), g.Dk = Q.dim(3), g.Dv = V.dim(3);
    if (K.dim(3) != g.Dk || V.dim(1) != g.Hkv || V.dim(2) != g.Skv || K.dim(0) != g.B || V.dim(0) != g.B)
      return ctx.error("K/V shapes do not match Q");
  }
  if (g.Hkv <= 0 || g.Hq % g.Hkv) return ctx.error("query heads must be a multiple of key/value heads");
  const bool has_past = ctx.has_input(4);
  g.P = has_past ? ctx.input(4).dim(2) : 0;
  g.T = g.P + g.Skv;
  if (has_past) {
    const Tensor& pk = ctx.input(4);
    const Tensor& pv = ctx.input(5);
    if (pk.dims() != Dims{g.B, g.Hkv, g.P, g.Dk} || pv.dims() != Dims{g.B, g.Hkv, g.P, g.Dv})
      return ctx.error("past_key/past_value shapes do not match K/V");
  }
  const DataType t = Q.dtype();
  const int64_t mode = a.get_int("qk_matmul_output_mode", 0);
  const bool causal = a.get_int("is_causal", 0) != 0;
  const int64_t left = ctx.opset() >= 25 ? a.get_int("left_window_size", -1) : -1;
  const int64_t right = ctx.opset() >= 25 ? a.get_int("right_window_size", -1) : -1;
  const double softcap = a.get_float("softcap", 0.f);
  DataType sm_t = t;
  if (a.has("softmax_precision")) {
    sm_t = static_cast<DataType>(a.get_int("softmax_precision", 1));
    if (!attn::is_float_dtype(sm_t)) return ctx.error("softmax_precision must be a float type code");
  }
  double scale = a.has("scale") ? a.get_float("scale", 1.f) : 1.0 / std::sqrt(static_cast<double>(g.Dk));
  const double sc = round_to(t, std::sqrt(scale));

  // present K/V = concat(past, new) along the sequence, always [B, Hkv, T, D].
  auto q = attn::to_doubles(Q), k_new = attn::to_doubles(K), v_new = attn::to_doubles(V);
  std::vector<double> kc(static_cast<size_t>(g.B * g.Hkv * g.T * g.Dk)), vc(static_cast<size_t>(g.B * g.Hkv * g.T * g.Dv));
  std::vector<double> pk, pv;
  if (has_past) pk = attn::to_doubles(ctx.input(4)), pv = attn::to_doubles(ctx.input(5));
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t h = 0; h < g.Hkv; ++h)
      for (int64_t s = 0; s < g.T; ++s) {
        bool past = s < g.P;
        for (int64_t d = 0; d < g.Dk; ++d)
          kc[((b * g.Hkv + h) * g.T + s) * g.Dk + d] =
              past ? pk[((b * g.Hkv + h) * g.P + s) * g.Dk + d]
                   : k_new[at(g.three_d, g.Hkv, g.Skv, g.Dk, b, h, s - g.P, d)];
        for (int64_t d = 0; d < g.Dv; ++d)
          vc[((b * g.Hkv + h) * g.T + s) * g.Dv + d] =
              past ? pv[((b * g.Hkv + h) * g.P + s) * g.Dv + d]
                   : v_new[at(g.three_d, g.Hkv, g.Skv, g.Dv, b, h, s - g.P, d)];
      }
  if (ctx.has_output(1))
    for (size_t i = 0; i < kc.size(); ++i) ctx.output(1).set_from_double(static_cast<int64_t>(i), kc[i]);
  if (ctx.has_output(2))
    for (size_t i = 0; i < vc.size(); ++i) ctx.output(2).set_from_double(static_cast<int64_t>(i), vc[i]);

  // Mask, broadcast right-aligned to [B, Hq, Sq, T]; a short key axis is padded as masked.
  const Tensor* mask = ctx.has_input(3) ? &ctx.input(3) : nullptr;
  std::vector<double> mvals;
  std::vector<int64_t> mstride(4, 0);
  int64_t mlast = 0;
  bool mbool = false;
  if (mask) {
    if (mask->rank() < 1 || mask->rank() > 4) return ctx.error("attn_mask must have rank 1..4");
    const Dims target{g.B, g.Hq, g.Sq, g.T};
    auto st = strides_of(mask->dims());
    int64_t off = 4 - mask->rank();
    for (int64_t i = 0; i < mask->rank(); ++i) {
      int64_t md = mask->dim(i);
      if (i == mask->rank() - 1) {
        if (md > g.T) return ctx.error("attn_mask's last dim exceeds the key sequence length");
        mlast = md;
        mstride[3] = st[i];
      } else {
        if (md != 1 && md != target[off + i]) return ctx.error("attn_mask does not broadcast to the scores");
        mstride[off + i] = md == 1 ? 0 : st[i];
      }
    }
    if (mask->rank() == 1) mlast = mask->dim(0);
    mbool = mask->dtype() == DataType::kBool;
    mvals = attn::to_doubles(*mask);
  }
  std::vector<int64_t> nonpad;
  if (ctx.has_input(6)) {
    nonpad = ctx.input(6).to_int64_vector();
    if (static_cast<int64_t>(nonpad.size()) != g.B) return ctx.error("nonpad_kv_seqlen must have batch_size entries");
  }
  auto bias_at = [&](int64_t b, int64_t h, int64_t i, int64_t j) {
    double m = 0;
    if (mask) {
      if (j >= mlast) {
        m = kNegInf;
      } else {
        double x = mvals[b * mstride[0] + h * mstride[1] + i * mstride[2] + j * mstride[3]];
        m = mbool ? (x != 0 ? 0.0 : kNegInf) : round_to(t, x);
      }
    }
    int64_t offset = has_past ? g.P : (!nonpad.empty() ? nonpad[b] - g.Sq : 0);
    int64_t diff = i + offset - j;
    if (causal && diff < 0) return kNegInf;
    if (left >= 0 && diff > left) return kNegInf;
    if (right >= 0 && -diff > right) return kNegInf;
    if (!nonpad.empty() && j >= nonpad[b]) return kNegInf;
    return m;
  };

  Tensor& Y = ctx.output(0);
  Tensor* QK = ctx.has_output(3) ? &ctx.output(3) : nullptr;
  const int64_t group = g.Hq / g.Hkv;
  std::vector<double> qs(g.Dk), logits(g.T), raw(g.T), prob(g.T);
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t h = 0; h < g.Hq; ++h) {
      const int64_t kh = h / group;
      for (int64_t i = 0; i < g.Sq; ++i) {
        for (int64_t d = 0; d < g.Dk; ++d) qs[d] = round_to(t, q[at(g.three_d, g.Hq, g.Sq, g.Dk, b, h, i, d)] * sc);
        double bias_max = kNegInf;
        for (int64_t j = 0; j < g.T; ++j) {
          const double* kr = &kc[((b * g.Hkv + kh) * g.T + j) * g.Dk];
          double s = 0;
          for (int64_t d = 0; d < g.Dk; ++d) s += qs[d] * round_to(t, kr[d] * sc);
          s = round_to(t, s);
          if (softcap > 0) s = round_to(t, round_to(t, std::tanh(round_to(t, s / softcap))) * softcap);
          raw[j] = s;
          double bias = bias_at(b, h, i, j);
          bias_max = std::max(bias_max, bias);
          logits[j] = round_to(t, s + bias);
        }
        // Softmax in the requested precision; a fully masked row (decided on the
        // bias alone, so NaN logits cannot leak) gives zero probabilities.
        double mx = kNegInf;
        for (int64_t j = 0; j < g.T; ++j) {
          logits[j] = round_to(sm_t, logits[j]);
          mx = std::max(mx, logits[j]);
        }
        if (mx == kNegInf) mx = 0;
        for (int64_t j = 0; j < g.T; ++j) prob[j] = round_to(sm_t, std::exp(round_to(sm_t, logits[j] - mx)));
        double sum = attn::dtype_sum(sm_t, prob.data(), prob.size());
        if (sum == 0) sum = 1;
        const bool masked_row = bias_max == kNegInf;
        for (int64_t j = 0; j < g.T; ++j) prob[j] = masked_row ? 0.0 : round_to(t, round_to(sm_t, prob[j] / sum));
        if (QK) {
          int64_t base = ((b * g.Hq + h) * g.Sq + i) * g.T;
          for (int64_t j = 0; j < g.T; ++j) {
            // Mode 2 is re-derived because `logits` was rounded to the softmax precision.
            double o = mode == 3 ? prob[j] : mode == 2 ? round_to(t, raw[j] + bias_at(b, h, i, j)) : raw[j];
            QK->set_from_double(base + j, o);
          }
        }
        for (int64_t d = 0; d < g.Dv; ++d) {
          double s = 0;
          for (int64_t j = 0; j < g.T; ++j) s += prob[j] * vc[((b * g.Hkv + kh) * g.T + j) * g.Dv + d];
          int64_t o = g.three_d ? ((b * g.Sq + i) * g.Hq + h) * g.Dv + d : ((b * g.Hq + h) * g.Sq + i) * g.Dv + d;
          Y.set_from_double(o, s);
        }
      }
    }
  return Status();
}

}  // namespace

void register_attention_core(OpRegistry& r) {
  r.add({.name = "Attention", .infer = infer_attention, .ref = ref_attention, .min_opset = 23});
}

}  // namespace kiln::ops

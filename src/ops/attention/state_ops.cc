// Recurrent-state helpers of modern decoder blocks: SwiGLU (opset 28),
// TensorScatter (opset 24, KV-cache writes), CausalConvWithState and
// LinearAttention (opset 27, depthwise causal conv / linear-attention recurrences).
#include <cmath>
#include <cstring>

#include "ops/attention/attn_util.h"

namespace kiln::ops {
namespace {

using attn::round_to;

// ---- SwiGLU: Y = A * sigmoid(alpha * A) * B ----

Status infer_swiglu(InferContext& ctx) {
  if (!attn::is_float_dtype(ctx.input_dtype(0))) return ctx.unsupported("SwiGLU needs a float dtype");
  if (ctx.input_dtype(1) != ctx.input_dtype(0)) return ctx.error("A and B must have the same dtype");
  const Shape* a = ctx.input_shape(0);
  const Shape* b = ctx.input_shape(1);
  if (a && b) {
    if (a->size() != b->size()) return ctx.error("A and B must have the same shape");
    for (size_t i = 0; i < a->size(); ++i)
      if ((*a)[i].known() && (*b)[i].known() && (*a)[i] != (*b)[i]) return ctx.error("A and B must have the same shape");
  }
  return infer_same_as_input0(ctx);
}

Status ref_swiglu(KernelContext& ctx) {
  const Tensor& A = ctx.input(0);
  const Tensor& B = ctx.input(1);
  if (A.dims() != B.dims()) return ctx.error("A and B must have the same shape (no broadcasting)");
  const double alpha = ctx.attrs().get_float("alpha", 1.f);
  const DataType t = A.dtype();
  Tensor& Y = ctx.output(0);
  for (int64_t i = 0; i < A.numel(); ++i) {
    double a = A.get_as_double(i);
    double sig = round_to(t, 1.0 / (1.0 + std::exp(-alpha * a)));
    Y.set_from_double(i, round_to(t, a * sig) * B.get_as_double(i));
  }
  return Status();
}

// ---- TensorScatter: writes `update` into a copy of `past_cache` at per-batch offsets ----

Status infer_tensor_scatter(InferContext& ctx) {
  if (ctx.input_dtype(0) == DataType::kString) return ctx.unsupported("string tensors are not supported");
  if (ctx.input_dtype(1) != ctx.input_dtype(0)) return ctx.error("past_cache and update must have the same dtype");
  std::string mode = ctx.attrs().get_string("mode", "linear");
  if (mode != "linear" && mode != "circular") return ctx.error("mode must be 'linear' or 'circular'");
  const Shape* c = ctx.input_shape(0);
  const Shape* u = ctx.input_shape(1);
  if (c && u && c->size() != u->size()) return ctx.error("past_cache and update must have the same rank");
  if (c) {
    auto ax = normalize_axis(ctx.attrs().get_int("axis", -2), static_cast<int64_t>(c->size()));
    if (!ax || *ax == 0) return ctx.error("axis is out of range (it cannot be the batch axis)");
  }
  return infer_same_as_input0(ctx);
}

Status ref_tensor_scatter(KernelContext& ctx) {
  const Tensor& C = ctx.input(0);
  const Tensor& U = ctx.input(1);
  auto ax = normalize_axis(ctx.attrs().get_int("axis", -2), C.rank());
  if (!ax || *ax == 0 || U.rank() != C.rank()) return ctx.error("bad axis or update rank");
  const int64_t axis = *ax;
  for (int64_t i = 0; i < C.rank(); ++i)
    if (i == axis ? U.dim(i) > C.dim(i) : U.dim(i) != C.dim(i))
      return ctx.error("update shape " + dims_to_string(U.dims()) + " does not fit cache " + dims_to_string(C.dims()));
  const bool circular = ctx.attrs().get_string("mode", "linear") == "circular";
  const int64_t batch = C.dim(0);
  std::vector<int64_t> idx(static_cast<size_t>(batch), 0);
  if (ctx.has_input(2)) {
    idx = ctx.input(2).to_int64_vector();
    if (static_cast<int64_t>(idx.size()) != batch) return ctx.error("write_indices must have batch_size entries");
  }
  Tensor& Y = ctx.output(0);
  const size_t es = dtype_size(C.dtype());
  if (C.nbytes()) std::memcpy(Y.data(), C.data(), C.nbytes());
  int64_t outer = 1, inner = 1;  // outer: dims before axis (after batch); inner: after axis
  for (int64_t i = 1; i < axis; ++i) outer *= C.dim(i);
  for (int64_t i = axis + 1; i < C.rank(); ++i) inner *= C.dim(i);
  const int64_t max_len = C.dim(axis), len = U.dim(axis);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t s = 0; s < len; ++s) {
      int64_t pos = idx[b] + s;
      if (circular && max_len > 0) pos = ((pos % max_len) + max_len) % max_len;
      if (pos < 0 || pos >= max_len) return ctx.error("write index " + std::to_string(pos) + " is outside the cache");
      for (int64_t o = 0; o < outer; ++o) {
        int64_t src = ((b * outer + o) * len + s) * inner;
        int64_t dst = ((b * outer + o) * max_len + pos) * inner;
        std::memcpy(static_cast<char*>(Y.data()) + dst * es, static_cast<const char*>(U.data()) + src * es, inner * es);
      }
    }
  }
  return Status();
}

// ---- CausalConvWithState: depthwise 1-D conv over [past_state, input] ----

Status infer_causal_conv(InferContext& ctx) {
  DataType t = ctx.input_dtype(0);
  if (!attn::is_float_dtype(t) || t == DataType::kFloat64) return ctx.unsupported("CausalConvWithState needs float/fp16/bf16");
  std::string act = ctx.attrs().get_string("activation", "none");
  if (act != "none" && act != "silu" && act != "swish") return ctx.error("activation must be none, silu or swish");
  const Shape* x = ctx.input_shape(0);
  const Shape* w = ctx.input_shape(1);
  if ((x && x->size() != 3) || (w && w->size() != 3)) return ctx.error("input and weight must be 3-D");
  ctx.set_output(0, t, x ? std::optional<Shape>(*x) : std::nullopt);
  Dim km1 = w && (*w)[2].known() ? Dim((*w)[2].value - 1) : Dim::unknown();
  if (x) ctx.set_output(1, t, Shape{(*x)[0], (*x)[1], km1});
  else ctx.set_output(1, t, std::nullopt);
  return Status();
}

Status ref_causal_conv(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  if (X.rank() != 3 || W.rank() != 3) return ctx.error("input and weight must be 3-D");
  const int64_t B = X.dim(0), C = X.dim(1), L = X.dim(2), k = W.dim(2);
  if (W.dim(0) != C || W.dim(1) != 1 || k < 1) return ctx.error("weight must be [channels, 1, k]");
  if (ctx.has_input(2) && ctx.input(2).dims() != Dims{C}) return ctx.error("bias must be [channels]");
  if (ctx.has_input(3) && ctx.input(3).dims() != Dims{B, C, k - 1}) return ctx.error("past_state must be [batch, channels, k-1]");
  const bool silu = ctx.attrs().get_string("activation", "none") != "none";
  const DataType t = X.dtype();
  auto x = attn::to_doubles(X), w = attn::to_doubles(W);
  std::vector<double> bias = ctx.has_input(2) ? attn::to_doubles(ctx.input(2)) : std::vector<double>(C, 0.0);
  std::vector<double> past = ctx.has_input(3) ? attn::to_doubles(ctx.input(3)) : std::vector<double>(B * C * (k - 1), 0.0);
  const int64_t PL = L + k - 1;
  std::vector<double> padded(PL);
  Tensor& Y = ctx.output(0);
  Tensor& S = ctx.output(1);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t i = 0; i < k - 1; ++i) padded[i] = past[(b * C + c) * (k - 1) + i];
      for (int64_t i = 0; i < L; ++i) padded[k - 1 + i] = x[(b * C + c) * L + i];
      for (int64_t i = 0; i < L; ++i) {
        double s = bias[c];
        for (int64_t j = 0; j < k; ++j) s += w[c * k + j] * padded[i + j];
        s = round_to(t, s);
        // The reference evaluates SiLU in float32.
        if (silu) s = static_cast<float>(s) * (1.0f / (1.0f + std::exp(-static_cast<float>(s))));
        Y.set_from_double((b * C + c) * L + i, s);
      }
      for (int64_t i = 0; i < k - 1; ++i) S.set_from_double((b * C + c) * (k - 1) + i, padded[PL - (k - 1) + i]);
    }
  return Status();
}

// ---- LinearAttention: S_t = g_t*S_{t-1} + k_t (beta_t (v_t - S^T k_t))^T, o_t = scale * S_t^T q_t ----

Status infer_linear_attention(InferContext& ctx) {
  DataType t = ctx.input_dtype(0);
  if (!attn::is_float_dtype(t) || t == DataType::kFloat64) return ctx.unsupported("LinearAttention needs float/fp16/bf16");
  const auto& a = ctx.attrs();
  int64_t qh = a.get_int("q_num_heads", 0), kvh = a.get_int("kv_num_heads", 0);
  if (qh <= 0 || kvh <= 0 || qh % kvh) return ctx.error("q_num_heads must be a positive multiple of kv_num_heads");
  std::string rule = a.get_string("update_rule", "gated_delta");
  if (rule != "linear" && rule != "gated" && rule != "delta" && rule != "gated_delta")
    return ctx.error("unknown update_rule '" + rule + "'");
  bool gating = rule == "gated" || rule == "gated_delta", delta = rule == "delta" || rule == "gated_delta";
  if (gating != ctx.has_input(4)) return ctx.error("update_rule '" + rule + (gating ? "' needs" : "' forbids") + " decay");
  if (delta != ctx.has_input(5)) return ctx.error("update_rule '" + rule + (delta ? "' needs" : "' forbids") + " beta");
  const Shape* q = ctx.input_shape(0);
  const Shape* k = ctx.input_shape(1);
  const Shape* v = ctx.input_shape(2);
  for (const Shape* s : {q, k, v})
    if (s && s->size() != 3) return ctx.error("query, key and value must be 3-D [B, T, H*D]");
  Dim dk = q && (*q)[2].known() ? Dim((*q)[2].value / qh) : Dim::unknown();
  Dim dv = v && (*v)[2].known() ? Dim((*v)[2].value / kvh) : Dim::unknown();
  Dim B = q ? (*q)[0] : Dim::unknown();
  ctx.set_output(0, t, q ? std::optional<Shape>(Shape{B, (*q)[1], dim_mul(Dim(qh), dv)}) : std::nullopt);
  ctx.set_output(1, ctx.has_input(3) ? ctx.input_dtype(3) : t, Shape{B, Dim(kvh), dk, dv});
  return Status();
}

Status ref_linear_attention(KernelContext& ctx) {
  const auto& a = ctx.attrs();
  const int64_t qh = a.get_int("q_num_heads", 0), kvh = a.get_int("kv_num_heads", 0);
  const std::string rule = a.get_string("update_rule", "gated_delta");
  const bool gating = rule == "gated" || rule == "gated_delta", delta = rule == "delta" || rule == "gated_delta";
  const Tensor& Q = ctx.input(0);
  const Tensor& K = ctx.input(1);
  const Tensor& V = ctx.input(2);
  if (Q.rank() != 3 || K.rank() != 3 || V.rank() != 3) return ctx.error("query, key and value must be 3-D");
  const int64_t B = Q.dim(0), T = Q.dim(1);
  if (Q.dim(2) % qh || K.dim(2) % kvh || V.dim(2) % kvh) return ctx.error("hidden sizes must divide by the head counts");
  const int64_t dk = Q.dim(2) / qh, dv = V.dim(2) / kvh, group = qh / kvh;
  if (K.dims() != Dims{B, T, kvh * dk} || V.dim(0) != B || V.dim(1) != T) return ctx.error("key/value shapes do not match query");
  std::vector<double> decay, beta;
  int64_t decay_last = 0, beta_last = 0;
  if (gating) {
    const Tensor& D = ctx.input(4);
    decay_last = D.rank() == 3 ? D.dim(2) : -1;
    if (D.rank() != 3 || D.dim(0) != B || D.dim(1) != T || (decay_last != kvh && decay_last != kvh * dk))
      return ctx.error("decay must be [B, T, kv_num_heads] or [B, T, kv_num_heads*d_k]");
    decay = attn::to_doubles(D);
  }
  if (delta) {
    const Tensor& Be = ctx.input(5);
    beta_last = Be.rank() == 3 ? Be.dim(2) : -1;
    if (Be.rank() != 3 || Be.dim(0) != B || Be.dim(1) != T || (beta_last != kvh && beta_last != 1))
      return ctx.error("beta must be [B, T, kv_num_heads] or [B, T, 1]");
    beta = attn::to_doubles(Be);
  }
  std::vector<double> state(static_cast<size_t>(B * kvh * dk * dv), 0.0);
  if (ctx.has_input(3)) {
    if (ctx.input(3).dims() != Dims{B, kvh, dk, dv}) return ctx.error("past_state must be [B, kv_num_heads, d_k, d_v]");
    state = attn::to_doubles(ctx.input(3));
    for (double& s : state) s = static_cast<float>(s);
  }
  double scale = a.get_float("scale", 0.f);
  if (scale == 0) scale = 1.0 / std::sqrt(static_cast<double>(dk));
  auto q = attn::to_doubles(Q), k = attn::to_doubles(K), v = attn::to_doubles(V);
  Tensor& Y = ctx.output(0);
  std::vector<double> vt(dv), ret(dv);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < kvh; ++h) {
        double* S = &state[(b * kvh + h) * dk * dv];
        const double* kt = &k[(b * T + t) * kvh * dk + h * dk];
        for (int64_t m = 0; m < dv; ++m) vt[m] = v[(b * T + t) * kvh * dv + h * dv + m];
        if (gating)
          for (int64_t d = 0; d < dk; ++d) {
            double g = decay[(b * T + t) * decay_last + (decay_last == kvh ? h : h * dk + d)];
            for (int64_t m = 0; m < dv; ++m) S[d * dv + m] *= std::exp(g);
          }
        if (delta) {
          double bt = beta[(b * T + t) * beta_last + (beta_last == 1 ? 0 : h)];
          for (int64_t m = 0; m < dv; ++m) {
            double r = 0;
            for (int64_t d = 0; d < dk; ++d) r += S[d * dv + m] * kt[d];
            ret[m] = bt * (vt[m] - r);
          }
          vt = ret;
        }
        for (int64_t d = 0; d < dk; ++d)
          for (int64_t m = 0; m < dv; ++m) S[d * dv + m] += kt[d] * vt[m];
      }
      for (int64_t h = 0; h < qh; ++h) {
        const double* S = &state[(b * kvh + h / group) * dk * dv];
        const double* qt = &q[(b * T + t) * qh * dk + h * dk];
        for (int64_t m = 0; m < dv; ++m) {
          double o = 0;
          for (int64_t d = 0; d < dk; ++d) o += qt[d] * S[d * dv + m];
          Y.set_from_double((b * T + t) * qh * dv + h * dv + m, scale * o);
        }
      }
    }
  Tensor& P = ctx.output(1);
  for (size_t i = 0; i < state.size(); ++i) P.set_from_double(static_cast<int64_t>(i), state[i]);
  return Status();
}

}  // namespace

void register_state_ops(OpRegistry& r) {
  r.add({.name = "SwiGLU", .infer = infer_swiglu, .ref = ref_swiglu, .min_opset = 28});
  r.add({.name = "TensorScatter", .infer = infer_tensor_scatter, .ref = ref_tensor_scatter, .min_opset = 24});
  r.add({.name = "CausalConvWithState", .infer = infer_causal_conv, .ref = ref_causal_conv, .min_opset = 27});
  r.add({.name = "LinearAttention", .infer = infer_linear_attention, .ref = ref_linear_attention, .min_opset = 27});
}

}  // namespace kiln::ops

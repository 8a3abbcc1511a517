// FlexAttention (ai.onnx.preview, opset 1): softmax(prob) attention over 4-D
// inputs with optional score_mod / prob_mod subgraphs applied to the scores and
// the probabilities, computed in softmax_precision (float32 unless double).
#include <cmath>
#include <limits>

#include "ops/attention/attn_util.h"

namespace kiln::ops {
namespace {

using attn::round_to;

Status infer_flex(InferContext& ctx) {
  for (int i = 0; i < 3; ++i) {
    if (!attn::is_float_dtype(ctx.input_dtype(i))) return ctx.unsupported("FlexAttention needs float inputs");
    const Shape* s = ctx.input_shape(i);
    if (s && s->size() != 4) return ctx.error("Q, K and V must be 4-D");
  }
  const Shape* q = ctx.input_shape(0);
  const Shape* v = ctx.input_shape(2);
  if (q && v) ctx.set_output(0, ctx.input_dtype(2), Shape{(*q)[0], (*q)[1], (*q)[2], (*v)[3]});
  else ctx.set_output(0, ctx.input_dtype(2), std::nullopt);
  return Status();
}

DataType compute_dtype(const ir::Node& node, DataType in) {
  if (node.attrs.has("softmax_precision")) return static_cast<DataType>(node.attrs.get_int("softmax_precision", 1));
  return in == DataType::kFloat64 ? DataType::kFloat64 : DataType::kFloat32;
}

// Runs a one-input, one-output modifier graph on `x` (dtype ct), checking its shape.
Status apply_mod(KernelContext& ctx, const char* name, DataType ct, const Dims& dims, std::vector<double>& x) {
  const ir::Attribute* a = ctx.attrs().find(name);
  if (!a || !a->g) return Status();
  if (!ctx.subgraph_runner()) return ctx.error("FlexAttention needs the executor's subgraph runner", ErrorCode::kInternal);
  Tensor t = Tensor::empty(ct, dims);
  for (size_t i = 0; i < x.size(); ++i) t.set_from_double(static_cast<int64_t>(i), x[i]);
  KILN_ASSIGN_OR_RETURN(std::vector<Tensor> outs, ctx.subgraph_runner()(*a->g, {t}));
  if (outs.size() != 1 || outs[0].dims() != dims)
    return ctx.error(std::string(name) + " must produce one tensor of shape " + dims_to_string(dims));
  for (size_t i = 0; i < x.size(); ++i) x[i] = round_to(ct, outs[0].get_as_double(static_cast<int64_t>(i)));
  return Status();
}

Status ref_flex(KernelContext& ctx) {
  const Tensor& Q = ctx.input(0);
  const Tensor& K = ctx.input(1);
  const Tensor& V = ctx.input(2);
  if (Q.rank() != 4 || K.rank() != 4 || V.rank() != 4) return ctx.error("Q, K and V must be 4-D");
  const int64_t B = Q.dim(0), Hq = Q.dim(1), L = Q.dim(2), E = Q.dim(3), Hk = K.dim(1), S = K.dim(2), Ev = V.dim(3);
  if (K.dim(0) != B || V.dim(0) != B || K.dim(3) != E || V.dim(1) != Hk || V.dim(2) != S)
    return ctx.error("K/V shapes do not match Q");
  if (Hk <= 0 || Hq % Hk) return ctx.error("q_num_heads must be a multiple of kv_num_heads");
  const DataType t = Q.dtype(), ct = compute_dtype(ctx.node(), t);
  if (!attn::is_float_dtype(ct)) return ctx.error("softmax_precision must be a float type code");
  double scale = ctx.attrs().has("scale") ? ctx.attrs().get_float("scale", 1.f) : 1.0 / std::sqrt(static_cast<double>(E));
  const double ss = round_to(t, std::sqrt(static_cast<float>(scale)));
  auto q = attn::to_doubles(Q), k = attn::to_doubles(K), v = attn::to_doubles(V);
  const int64_t group = Hq / Hk;
  const Dims sdims{B, Hq, L, S};
  std::vector<double> sc(static_cast<size_t>(B * Hq * L * S));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < L; ++i)
        for (int64_t j = 0; j < S; ++j) {
          double s = 0;
          for (int64_t d = 0; d < E; ++d)
            s += round_to(t, q[((b * Hq + h) * L + i) * E + d] * ss) *
                 round_to(t, k[((b * Hk + h / group) * S + j) * E + d] * ss);
          sc[((b * Hq + h) * L + i) * S + j] = round_to(ct, round_to(t, s));
        }
  if (Status s = apply_mod(ctx, "score_mod", ct, sdims, sc); !s.ok()) return s;
  for (int64_t r = 0; r < B * Hq * L; ++r) {
    double* row = &sc[r * S];
    double mx = -std::numeric_limits<double>::infinity(), sum = 0;
    for (int64_t j = 0; j < S; ++j) mx = std::max(mx, row[j]);
    for (int64_t j = 0; j < S; ++j) sum += (row[j] = round_to(ct, std::exp(round_to(ct, row[j] - mx))));
    sum = round_to(ct, sum);
    for (int64_t j = 0; j < S; ++j) row[j] = round_to(ct, row[j] / sum);
  }
  if (Status s = apply_mod(ctx, "prob_mod", ct, sdims, sc); !s.ok()) return s;
  Tensor& Y = ctx.output(0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < L; ++i)
        for (int64_t d = 0; d < Ev; ++d) {
          double o = 0;
          for (int64_t j = 0; j < S; ++j)
            o += sc[((b * Hq + h) * L + i) * S + j] * round_to(ct, v[((b * Hk + h / group) * S + j) * Ev + d]);
          Y.set_from_double(((b * Hq + h) * L + i) * Ev + d, o);
        }
  return Status();
}

}  // namespace

void register_flex_attention(OpRegistry& r) {
  r.add({.name = "FlexAttention", .domain = "ai.onnx.preview", .infer = infer_flex, .ref = ref_flex});
}

}  // namespace kiln::ops

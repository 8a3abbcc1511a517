// RotaryEmbedding (opset 23): rotates pairs of features of each head by the
// position's angle, (x1, x2) -> (x1*cos - x2*sin, x1*sin + x2*cos).
#include "ops/attention/attn_util.h"

namespace kiln::ops {
namespace {

Status infer_rotary(InferContext& ctx) {
  auto s = require_shape(ctx, 0);
  if (!s.ok()) return s.status();
  size_t r = (*s)->size();
  if (r != 3 && r != 4) return ctx.error("input must be 3-D or 4-D");
  DataType t = ctx.input_dtype(0);
  if (!attn::is_float_dtype(t) || t == DataType::kFloat64)
    return ctx.unsupported(std::string("dtype ") + dtype_name(t) + " is not supported");
  if (r == 3 && ctx.attrs().get_int("num_heads", 0) <= 0) return ctx.error("3-D input needs a positive num_heads");
  if (ctx.has_input(3) && ctx.input_dtype(3) != DataType::kInt64) return ctx.error("position_ids must be int64");
  return infer_same_as_input0(ctx);
}

Status ref_rotary(KernelContext& ctx) {
  const Tensor& X = ctx.input(0);
  const Tensor& C = ctx.input(1);
  const Tensor& S = ctx.input(2);
  const bool interleaved = ctx.attrs().get_int("interleaved", 0) != 0;
  const bool three_d = X.rank() == 3;
  // Logical layout [B, S, H, D]; a 4-D input is [B, H, S, D].
  int64_t B = X.dim(0), Sl, H, D;
  if (three_d) {
    H = ctx.attrs().get_int("num_heads", 0);
    Sl = X.dim(1);
    if (H <= 0 || X.dim(2) % H) return ctx.error("hidden size is not divisible by num_heads");
    D = X.dim(2) / H;
  } else {
    H = X.dim(1), Sl = X.dim(2), D = X.dim(3);
  }
  int64_t rd = ctx.attrs().get_int("rotary_embedding_dim", 0);
  if (rd == 0) rd = D;
  if (rd < 0 || rd > D || rd % 2) return ctx.error("rotary_embedding_dim must be even and at most the head size");
  const int64_t half = rd / 2;
  const bool has_pos = ctx.has_input(3);
  std::vector<int64_t> pos;
  if (has_pos) {
    const Tensor& P = ctx.input(3);
    if (P.dims() != Dims{B, Sl}) return ctx.error("position_ids must be [batch, sequence]");
    if (C.rank() != 2 || S.dims() != C.dims() || C.dim(1) != half)
      return ctx.error("with position_ids, cos/sin caches must be [max_position, rotary_dim/2]");
    pos = P.to_int64_vector();
    for (int64_t p : pos)
      if (p < 0 || p >= C.dim(0)) return ctx.error("position id " + std::to_string(p) + " is out of the cache range");
  } else if (C.dims() != Dims{B, Sl, half} || S.dims() != C.dims()) {
    return ctx.error("without position_ids, cos/sin caches must be [batch, sequence, rotary_dim/2]");
  }
  auto x = attn::to_doubles(X), cv = attn::to_doubles(C), sv = attn::to_doubles(S);
  Tensor& Y = ctx.output(0);
  const DataType t = X.dtype();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < Sl; ++s) {
      int64_t row = has_pos ? pos[b * Sl + s] : b * Sl + s;
      const double* c = &cv[row * half];
      const double* sn = &sv[row * half];
      for (int64_t h = 0; h < H; ++h) {
        int64_t base = three_d ? ((b * Sl + s) * H + h) * D : ((b * H + h) * Sl + s) * D;
        for (int64_t d = rd; d < D; ++d) Y.set_from_double(base + d, x[base + d]);
        for (int64_t i = 0; i < half; ++i) {
          int64_t i1 = interleaved ? 2 * i : i, i2 = interleaved ? 2 * i + 1 : i + half;
          double x1 = x[base + i1], x2 = x[base + i2];
          // Each product is rounded like the reference's elementwise ops.
          double re = attn::round_to(t, c[i] * x1) - attn::round_to(t, sn[i] * x2);
          double im = attn::round_to(t, sn[i] * x1) + attn::round_to(t, c[i] * x2);
          Y.set_from_double(base + i1, re);
          Y.set_from_double(base + i2, im);
        }
      }
    }
  return Status();
}

}  // namespace

void register_rotary_embedding(OpRegistry& r) {
  r.add({.name = "RotaryEmbedding", .infer = infer_rotary, .ref = ref_rotary, .min_opset = 23});
}

}  // namespace kiln::ops

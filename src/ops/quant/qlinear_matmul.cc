// QLinearMatMul: numpy-style matmul of two quantized tensors, requantized to the
// output scale and zero point (exact integer accumulation, round half to even).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backends/cpu/thread_pool.h"
#include "ops/common.h"
#include "ops/quant/quant_util.h"

namespace kiln::ops {
namespace {

using namespace quant;

bool is_q8(DataType t) { return t == DataType::kInt8 || t == DataType::kUInt8; }

Result<Shape> matmul_shape(const InferContext& ctx, Shape a, Shape b) {
  if (a.empty() || b.empty()) return ctx.error("matmul inputs must have rank >= 1");
  bool a1 = a.size() == 1, b1 = b.size() == 1;
  if (a1) a.insert(a.begin(), Dim(1));
  if (b1) b.push_back(Dim(1));
  const Dim& ka = a.back();
  const Dim& kb = b[b.size() - 2];
  if (ka.known() && kb.known() && ka.value != kb.value)
    return ctx.error("inner dims differ: " + shape_to_string(a) + " x " + shape_to_string(b));
  Shape ab(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
  auto batch = broadcast_shapes({&ab, &bb});
  if (!batch) return ctx.error("batch dims do not broadcast: " + shape_to_string(a) + " x " + shape_to_string(b));
  Shape out = *batch;
  if (!a1) out.push_back(a[a.size() - 2]);
  if (!b1) out.push_back(b.back());
  return out;
}

Status infer_qlinear_matmul(InferContext& ctx) {
  if (!is_q8(ctx.input_dtype(0)) || !is_q8(ctx.input_dtype(3)))
    return ctx.unsupported(std::string("inputs must be int8 or uint8, got ") + dtype_name(ctx.input_dtype(0)) +
                           " and " + dtype_name(ctx.input_dtype(3)));
  for (int i : {1, 4, 6}) {
    DataType t = ctx.input_dtype(i);
    if (t != DataType::kFloat32 && t != DataType::kFloat16 && t != DataType::kBFloat16)
      return ctx.error("scale input " + std::to_string(i) + " must be a float tensor");
  }
  DataType out = ctx.has_input(7) ? ctx.input_dtype(7) : ctx.input_dtype(0);
  if (!is_q8(out)) return ctx.unsupported(std::string("output type ") + dtype_name(out) + " is not supported");
  const Shape* a = ctx.input_shape(0);
  const Shape* b = ctx.input_shape(3);
  if (!a || !b) {
    ctx.set_output(0, out, std::nullopt);
    return Status();
  }
  KILN_ASSIGN_OR_RETURN(Shape s, matmul_shape(ctx, *a, *b));
  ctx.set_output(0, out, s);
  return Status();
}

/// A scale or zero point laid out against a matrix operand: `rows` is 1 (shared) or
/// the operand's row/column count; batch strides index its leading dims.
struct MatParam {
  std::vector<double> v;
  std::vector<int64_t> batch_strides;  ///< per output batch dim (0 = broadcast)
  int64_t line_stride = 0;             ///< per row of a / column of b
};

/// `per_row`: a's params vary along rows (dim -2); otherwise b's along columns (dim -1).
Result<MatParam> mat_param(const KernelContext& ctx, const Tensor* t, int64_t lines, bool per_row,
                           const Dims& out_batch, const char* what) {
  MatParam p;
  if (!t) {
    p.v = {0.0};
    p.batch_strides.assign(out_batch.size(), 0);
    return p;
  }
  for (int64_t i = 0; i < t->numel(); ++i) p.v.push_back(t->get_as_double(i));
  p.batch_strides.assign(out_batch.size(), 0);
  if (t->numel() == 1) return p;
  Dims d = t->dims();
  if (d.size() == 1) d = per_row ? Dims{d[0], 1} : Dims{1, d[0]};
  if (d.size() < 2) return ctx.error(std::string(what) + " has a bad shape");
  int64_t r = static_cast<int64_t>(d.size());
  int64_t line_dim = per_row ? d[r - 2] : d[r - 1];
  int64_t other = per_row ? d[r - 1] : d[r - 2];
  if (other != 1 || (line_dim != 1 && line_dim != lines))
    return ctx.error(std::string(what) + " dims " + dims_to_string(t->dims()) + " are neither per-tensor nor per-" +
                     (per_row ? "row" : "column"));
  Dims batch(d.begin(), d.end() - 2);
  if (batch.size() > out_batch.size()) return ctx.error(std::string(what) + " has too many dims");
  size_t off = out_batch.size() - batch.size();
  int64_t stride = line_dim;
  for (size_t i = batch.size(); i-- > 0;) {
    if (batch[i] != 1 && batch[i] != out_batch[off + i])
      return ctx.error(std::string(what) + " dims " + dims_to_string(t->dims()) + " do not broadcast");
    p.batch_strides[off + i] = batch[i] == 1 ? 0 : stride;
    stride *= batch[i];
  }
  p.line_stride = line_dim == 1 ? 0 : 1;
  return p;
}

Status ref_qlinear_matmul(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(3);
  Tensor& y = ctx.output(0);
  Dims ad = a.dims(), bd = b.dims();
  if (ad.size() == 1) ad.insert(ad.begin(), 1);
  if (bd.size() == 1) bd.push_back(1);
  int64_t M = ad[ad.size() - 2], K = ad.back(), N = bd.back();
  if (bd[bd.size() - 2] != K) return ctx.error("inner dims differ");
  Dims ab(ad.begin(), ad.end() - 2), bb(bd.begin(), bd.end() - 2), ob;
  if (!broadcast_dims({ab, bb}, ob)) return ctx.error("batch dims do not broadcast");
  auto astr = broadcast_strides(ab, ob), bstr = broadcast_strides(bb, ob);
  for (auto& s : astr) s *= M * K;
  for (auto& s : bstr) s *= K * N;
  auto in = [&](int i) { return ctx.has_input(i) ? &ctx.input(i) : nullptr; };
  KILN_ASSIGN_OR_RETURN(MatParam as, mat_param(ctx, in(1), M, true, ob, "a_scale"));
  KILN_ASSIGN_OR_RETURN(MatParam az, mat_param(ctx, in(2), M, true, ob, "a_zero_point"));
  KILN_ASSIGN_OR_RETURN(MatParam bs, mat_param(ctx, in(4), N, false, ob, "b_scale"));
  KILN_ASSIGN_OR_RETURN(MatParam bz, mat_param(ctx, in(5), N, false, ob, "b_zero_point"));
  if (ctx.input(6).numel() != 1 || (in(7) && in(7)->numel() != 1))
    return ctx.error("y_scale and y_zero_point must be per-tensor");
  double ys = ctx.input(6).get_as_double(0);
  double yz = in(7) ? in(7)->get_as_double(0) : 0.0;
  DataType sdt = ctx.input(1).dtype();
  DataType odt = y.dtype();
  int64_t batches = dims_volume(ob);
  MultiIndex it(ob, {astr, bstr, as.batch_strides, az.batch_strides, bs.batch_strides, bz.batch_strides});
  for (int64_t bi = 0; bi < batches; ++bi, it.next()) {
    int64_t ao = it.offset(0), bo = it.offset(1);
    for (int64_t m = 0; m < M; ++m) {
      double azp = az.v[it.offset(3) + m * az.line_stride];
      double asc = as.v[it.offset(2) + m * as.line_stride];
      for (int64_t n = 0; n < N; ++n) {
        double bzp = bz.v[it.offset(5) + n * bz.line_stride];
        double bsc = bs.v[it.offset(4) + n * bs.line_stride];
        int64_t acc = 0;
        for (int64_t k = 0; k < K; ++k) {
          int64_t av = static_cast<int64_t>(a.get_as_double(ao + m * K + k)) - static_cast<int64_t>(azp);
          int64_t bv = static_cast<int64_t>(b.get_as_double(bo + k * N + n)) - static_cast<int64_t>(bzp);
          acc += av * bv;
        }
        // Accumulation wraps in 32 bits like the reference's int32 matmul; the
        // multiplier is computed in the scales' own float type.
        int32_t c = static_cast<int32_t>(static_cast<uint32_t>(acc));
        double mult = round_to(round_to(asc * bsc, sdt) / ys, sdt);
        y.set_from_double((bi * M + m) * N + n, saturate_round(static_cast<double>(c) * mult + yz, odt));
      }
    }
  }
  return Status();
}

/// Copies an 8-bit tensor to int16 with `zp[line]` subtracted.
template <typename Q>
void widen_minus_zp(const Q* src, int16_t* dst, int64_t rows, int64_t cols, const std::vector<double>& zp,
                    bool per_col) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      dst[r * cols + c] = static_cast<int16_t>(src[r * cols + c] - static_cast<int>(zp[zp.size() == 1 ? 0
                                                                                       : per_col      ? c
                                                                                                      : r]));
}

void widen_any(const Tensor& t, int16_t* dst, int64_t rows, int64_t cols, const std::vector<double>& zp, bool per_col) {
  if (t.dtype() == DataType::kUInt8)
    widen_minus_zp(t.data_as<uint8_t>(), dst, rows, cols, zp, per_col);
  else
    widen_minus_zp(t.data_as<int8_t>(), dst, rows, cols, zp, per_col);
}

/// Shared 2-D weights (b), per-tensor a and y, per-tensor or per-column b params, float32 scales.
Status fast_qlinear_matmul(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(3);
  auto in = [&](int i) { return ctx.has_input(i) ? &ctx.input(i) : nullptr; };
  auto numel_is = [&](int i, int64_t n) { return !in(i) || in(i)->numel() == n; };
  bool ok = a.rank() >= 2 && b.rank() == 2 && a.dims().back() == b.dim(0);
  int64_t K = ok ? b.dim(0) : 0, N = ok ? b.dim(1) : 0;
  bool b_cols = in(4)->numel() == N && in(4)->rank() == 1 && numel_is(5, N) && (!in(5) || in(5)->rank() == 1);
  ok = ok && in(1)->numel() == 1 && numel_is(2, 1) && (in(4)->numel() == 1 ? numel_is(5, 1) : b_cols) &&
       in(6)->numel() == 1 && numel_is(7, 1);
  for (int i : {1, 4, 6}) ok = ok && in(i)->dtype() == DataType::kFloat32;
  if (!ok) return ref_qlinear_matmul(ctx);
  int64_t M = dims_volume(Dims(a.dims().begin(), a.dims().end() - 1));
  auto values = [&](int i) {
    std::vector<double> v;
    if (!in(i)) return std::vector<double>{0.0};
    for (int64_t k = 0; k < in(i)->numel(); ++k) v.push_back(in(i)->get_as_double(k));
    return v;
  };
  std::vector<double> as = values(1), az = values(2), bs = values(4), bz = values(5), ys = values(6), yz = values(7);
  std::vector<int16_t> A(static_cast<size_t>(M * K)), B(static_cast<size_t>(K * N));
  widen_any(a, A.data(), M, K, az, false);
  widen_any(b, B.data(), K, N, bz, true);
  std::vector<double> mult(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n)
    mult[n] = static_cast<float>(
        static_cast<float>(static_cast<float>(as[0]) * static_cast<float>(bs[bs.size() == 1 ? 0 : n])) /
        static_cast<float>(ys[0]));
  Tensor& y = ctx.output(0);
  DataType odt = y.dtype();
  cpu::parallel_for(
      M,
      [&](int64_t m0, int64_t m1) {
        std::vector<uint32_t> acc(static_cast<size_t>(N));
        for (int64_t m = m0; m < m1; ++m) {
          std::fill(acc.begin(), acc.end(), 0u);
          for (int64_t k = 0; k < K; ++k) {
            // Unsigned arithmetic wraps in 32 bits, like the reference's int32 accumulation.
            uint32_t av = static_cast<uint32_t>(static_cast<int32_t>(A[m * K + k]));
            const int16_t* brow = &B[k * N];
            for (int64_t n = 0; n < N; ++n) acc[n] += av * static_cast<uint32_t>(static_cast<int32_t>(brow[n]));
          }
          for (int64_t n = 0; n < N; ++n) {
            double v = static_cast<double>(static_cast<int32_t>(acc[n])) * mult[n] + yz[0];
            y.set_from_double(m * N + n, saturate_round(v, odt));
          }
        }
      },
      ctx.num_threads(), std::max<int64_t>(1, 65536 / std::max<int64_t>(K * N, 1)));
  return Status();
}

}  // namespace

void register_qlinear_matmul_ops(OpRegistry& r) {
  r.add({.name = "QLinearMatMul",
         .infer = infer_qlinear_matmul,
         .ref = ref_qlinear_matmul,
         .fast = {{"cpu.int16", fast_qlinear_matmul, nullptr}},
         .min_opset = 10});
}

}  // namespace kiln::ops

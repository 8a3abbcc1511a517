// MatMul (numpy semantics: 1-D operands, batch broadcast), com.microsoft FusedMatMul
// (alpha and per-operand transposes) and MatMulInteger (exact int32 with zero points).
#include <type_traits>

#include "base/dispatch.h"
#include "ops/matmul/matmul_internal.h"

namespace kiln::ops::matmul {

bool MatMulDims::folds_into_m() const {
  if (trans_a) return false;
  for (int64_t i = 0; i < batch(); ++i)
    if (b_offsets[i] != 0 || a_offsets[i] != i * m * k) return false;
  return true;
}

Result<MatMulDims> matmul_dims(const Dims& a, const Dims& b, bool trans_a, bool trans_b) {
  if (a.empty() || b.empty())
    return Status(ErrorCode::kInvalidArgument, "MatMul operands must have rank >= 1, got " + dims_to_string(a) +
                                                   " and " + dims_to_string(b));
  MatMulDims g;
  Dims ad = a, bd = b;
  // A 1-D operand is a row (A) or column (B) vector; the transposes do not apply to it.
  if (a.size() == 1) {
    ad = {1, a[0]};
    trans_a = false;
  }
  if (b.size() == 1) {
    bd = {b[0], 1};
    trans_b = false;
  }
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  int64_t ra = static_cast<int64_t>(ad.size()), rb = static_cast<int64_t>(bd.size());
  g.m = trans_a ? ad[ra - 1] : ad[ra - 2];
  g.k = trans_a ? ad[ra - 2] : ad[ra - 1];
  int64_t bk = trans_b ? bd[rb - 1] : bd[rb - 2];
  g.n = trans_b ? bd[rb - 2] : bd[rb - 1];
  if (g.k != bk)
    return Status(ErrorCode::kInvalidArgument, "MatMul inner dims differ: A " + dims_to_string(a) + " (K=" +
                                                   std::to_string(g.k) + ") vs B " + dims_to_string(b) +
                                                   " (K=" + std::to_string(bk) + ")");
  Dims a_batch(ad.begin(), ad.end() - 2), b_batch(bd.begin(), bd.end() - 2), batch;
  if (!broadcast_dims({a_batch, b_batch}, batch))
    return Status(ErrorCode::kInvalidArgument, "MatMul batch dims of " + dims_to_string(a) + " and " +
                                                   dims_to_string(b) + " do not broadcast");
  g.out = batch;
  if (a.size() != 1) g.out.push_back(g.m);
  if (b.size() != 1) g.out.push_back(g.n);
  int64_t count = dims_volume(batch);
  auto as = broadcast_strides(a_batch, batch), bs = broadcast_strides(b_batch, batch);
  g.a_offsets.resize(count);
  g.b_offsets.resize(count);
  if (count > 0) {
    MultiIndex it(batch, {as, bs});
    for (int64_t i = 0; i < count; ++i, it.next()) {
      g.a_offsets[i] = it.offset(0) * g.m * g.k;
      g.b_offsets[i] = it.offset(1) * g.k * g.n;
    }
  }
  return g;
}

Result<std::optional<Shape>> matmul_shape(const InferContext& ctx, const Shape* a, const Shape* b, bool trans_a,
                                          bool trans_b) {
  if (!a || !b) return std::optional<Shape>();
  if (a->empty() || b->empty()) return ctx.error("MatMul operands must have rank >= 1");
  Shape ad = *a, bd = *b;
  if (a->size() == 1) {
    ad = {Dim(1), (*a)[0]};
    trans_a = false;
  }
  if (b->size() == 1) {
    bd = {(*b)[0], Dim(1)};
    trans_b = false;
  }
  size_t ra = ad.size(), rb = bd.size();
  Dim m = trans_a ? ad[ra - 1] : ad[ra - 2], ka = trans_a ? ad[ra - 2] : ad[ra - 1];
  Dim kb = trans_b ? bd[rb - 1] : bd[rb - 2], n = trans_b ? bd[rb - 2] : bd[rb - 1];
  if (ka.known() && kb.known() && ka.value != kb.value)
    return ctx.error("inner dims differ: A " + shape_to_string(*a) + " vs B " + shape_to_string(*b));
  Shape a_batch(ad.begin(), ad.end() - 2), b_batch(bd.begin(), bd.end() - 2);
  auto batch = broadcast_shapes({&a_batch, &b_batch});
  if (!batch) return ctx.error("batch dims of " + shape_to_string(*a) + " and " + shape_to_string(*b) +
                               " do not broadcast");
  Shape out = *batch;
  if (a->size() != 1) out.push_back(m);
  if (b->size() != 1) out.push_back(n);
  return std::optional<Shape>(out);
}

namespace {

// Accumulates in double (floats) or in wrapping 64-bit integers, then converts once.
template <typename T>
void matmul_typed(const MatMulDims& g, double alpha, const T* a, const T* b, T* c) {
  const int64_t m = g.m, n = g.n, k = g.k;
  for (int64_t bi = 0; bi < g.batch(); ++bi) {
    const T* ab = a + g.a_offsets[bi];
    const T* bb = b + g.b_offsets[bi];
    T* cb = c + bi * m * n;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        auto av = [&](int64_t p) { return g.trans_a ? ab[p * m + i] : ab[i * k + p]; };
        auto bv = [&](int64_t p) { return g.trans_b ? bb[j * k + p] : bb[p * n + j]; };
        if constexpr (std::is_integral_v<T>) {
          uint64_t s = 0;
          for (int64_t p = 0; p < k; ++p)
            s += static_cast<uint64_t>(static_cast<int64_t>(av(p))) * static_cast<uint64_t>(static_cast<int64_t>(bv(p)));
          cb[i * n + j] = static_cast<T>(s);
        } else {
          double s = 0;
          for (int64_t p = 0; p < k; ++p) s += static_cast<double>(av(p)) * static_cast<double>(bv(p));
          if constexpr (std::is_same_v<T, double>) cb[i * n + j] = alpha * s;
          else cb[i * n + j] = static_cast<T>(static_cast<float>(alpha * s));
        }
      }
  }
}

Status check_same_dtype(const InferContext& ctx) {
  DataType a = ctx.input_dtype(0), b = ctx.input_dtype(1);
  if (a != DataType::kUndefined && b != DataType::kUndefined && a != b)
    return ctx.error(std::string("A is ") + dtype_name(a) + " but B is " + dtype_name(b));
  if (a == DataType::kString || a == DataType::kBool) return ctx.unsupported(std::string("dtype ") + dtype_name(a));
  return Status();
}

Status infer_matmul_like(InferContext& ctx, bool trans_a, bool trans_b) {
  if (!ctx.has_input(0) || !ctx.has_input(1)) return ctx.error("needs inputs A and B");
  KILN_RETURN_IF_ERROR(check_same_dtype(ctx));
  auto shape = matmul_shape(ctx, ctx.input_shape(0), ctx.input_shape(1), trans_a, trans_b);
  if (!shape.ok()) return shape.status();
  ctx.set_output(0, ctx.input_dtype(0), *shape);
  return Status();
}

Status run_matmul_ref(KernelContext& ctx, bool trans_a, bool trans_b, double alpha) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  if (a.dtype() != b.dtype()) return ctx.error("A and B dtypes differ");
  auto g = matmul_dims(a.dims(), b.dims(), trans_a, trans_b);
  if (!g.ok()) return ctx.error(g.status().message());
  Tensor& y = ctx.output(0);
  KILN_DISPATCH_NUMERIC(a.dtype(), T, matmul_typed<T>(*g, alpha, a.data_as<T>(), b.data_as<T>(), y.data_as<T>()));
  return Status();
}

Status check_fused_attrs(const ir::Attributes& attrs, const ir::Node& node) {
  if (attrs.get_int("transBatchA", 0) || attrs.get_int("transBatchB", 0))
    return Status(ErrorCode::kUnsupported, "node " + node.describe() + ": transBatchA/transBatchB are not supported");
  return Status();
}

}  // namespace

Status infer_matmul(InferContext& ctx) { return infer_matmul_like(ctx, false, false); }
Status ref_matmul(KernelContext& ctx) { return run_matmul_ref(ctx, false, false, 1.0); }

Status infer_fused_matmul(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(check_fused_attrs(ctx.attrs(), ctx.node()));
  return infer_matmul_like(ctx, ctx.attrs().get_int("transA", 0) != 0, ctx.attrs().get_int("transB", 0) != 0);
}

Status ref_fused_matmul(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(check_fused_attrs(ctx.attrs(), ctx.node()));
  return run_matmul_ref(ctx, ctx.attrs().get_int("transA", 0) != 0, ctx.attrs().get_int("transB", 0) != 0,
                        ctx.attrs().get_float("alpha", 1.f));
}

// ---------------------------------------------------------------- MatMulInteger

namespace {

bool is_8bit(DataType t) { return t == DataType::kInt8 || t == DataType::kUInt8; }

// Zero point as a per-index lookup: numel 1 = shared, numel == count = per row/column.
Result<std::vector<int32_t>> zero_points(const KernelContext& ctx, size_t input, DataType operand, int64_t count,
                                         const char* what) {
  std::vector<int32_t> zp(static_cast<size_t>(count), 0);
  if (!ctx.has_input(input)) return zp;
  const Tensor& t = ctx.input(input);
  if (t.dtype() != operand)
    return ctx.error(std::string(what) + " zero point dtype " + dtype_name(t.dtype()) + " differs from its operand");
  if (t.numel() == 1) {
    std::fill(zp.begin(), zp.end(), static_cast<int32_t>(t.get_as_int64(0)));
  } else if (t.numel() == count) {
    for (int64_t i = 0; i < count; ++i) zp[i] = static_cast<int32_t>(t.get_as_int64(i));
  } else {
    return ctx.error(std::string(what) + " zero point has " + std::to_string(t.numel()) +
                     " elements; expected 1 or " + std::to_string(count));
  }
  return zp;
}

}  // namespace

Status infer_matmul_integer(InferContext& ctx) {
  if (!ctx.has_input(0) || !ctx.has_input(1)) return ctx.error("needs inputs A and B");
  for (size_t i = 0; i < 2; ++i) {
    DataType t = ctx.input_dtype(i);
    if (t != DataType::kUndefined && !is_8bit(t))
      return ctx.error(std::string("input ") + std::to_string(i) + " must be int8 or uint8, got " + dtype_name(t));
  }
  auto shape = matmul_shape(ctx, ctx.input_shape(0), ctx.input_shape(1), false, false);
  if (!shape.ok()) return shape.status();
  ctx.set_output(0, DataType::kInt32, *shape);
  return Status();
}

Status ref_matmul_integer(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  if (!is_8bit(a.dtype()) || !is_8bit(b.dtype())) return ctx.error("A and B must be int8 or uint8");
  auto g = matmul_dims(a.dims(), b.dims(), false, false);
  if (!g.ok()) return ctx.error(g.status().message());
  auto azp = zero_points(ctx, 2, a.dtype(), g->m, "A");
  if (!azp.ok()) return azp.status();
  auto bzp = zero_points(ctx, 3, b.dtype(), g->n, "B");
  if (!bzp.ok()) return bzp.status();
  int32_t* y = ctx.output(0).data_as<int32_t>();
  const int64_t m = g->m, n = g->n, k = g->k;
  for (int64_t bi = 0; bi < g->batch(); ++bi)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        int32_t s = 0;
        for (int64_t p = 0; p < k; ++p) {
          int32_t av = static_cast<int32_t>(a.get_as_int64(g->a_offsets[bi] + i * k + p)) - (*azp)[i];
          int32_t bv = static_cast<int32_t>(b.get_as_int64(g->b_offsets[bi] + p * n + j)) - (*bzp)[j];
          s += av * bv;
        }
        y[(bi * m + i) * n + j] = s;
      }
  return Status();
}

bool applies_f32(const ir::Node& node, const std::vector<TensorType>& inputs) {
  for (size_t i = 0; i < inputs.size(); ++i)
    if (node.input(i) && inputs[i].dtype != DataType::kFloat32) return false;
  return inputs.size() >= 2;
}

}  // namespace kiln::ops::matmul

namespace kiln::ops {

void register_matmul_ops(OpRegistry& r) {
  using namespace matmul;
  std::vector<FastKernel> mm, gemm, fused;
#ifdef KILN_HAVE_DNNL
  mm.push_back({"cpu.onednn", onednn_matmul, applies_f32});
  gemm.push_back({"cpu.onednn", onednn_gemm, applies_f32});
#endif
  mm.push_back({"cpu.gemm", cpu_gemm_matmul, applies_f32});
  gemm.push_back({"cpu.gemm", cpu_gemm_gemm, applies_f32});
  fused.push_back({"cpu.gemm", cpu_gemm_fused_matmul, applies_f32});
  r.add({.name = "MatMul", .infer = infer_matmul, .ref = ref_matmul, .fast = mm});
  r.add({.name = "Gemm", .infer = infer_gemm, .ref = ref_gemm, .fast = gemm});
  r.add({.name = "MatMulInteger", .infer = infer_matmul_integer, .ref = ref_matmul_integer, .min_opset = 10});
  r.add({.name = "FusedMatMul",
         .domain = "com.microsoft",
         .infer = infer_fused_matmul,
         .ref = ref_fused_matmul,
         .fast = fused});
  register_matmul_bias(r);
}

}  // namespace kiln::ops

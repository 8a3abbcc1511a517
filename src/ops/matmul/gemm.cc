// Gemm: Y = alpha * op(A) @ op(B) + beta * C, A and B 2-D, C optional and
// unidirectionally broadcast to [M, N].
#include <type_traits>

#include "base/dispatch.h"
#include "ops/matmul/matmul_internal.h"

namespace kiln::ops::matmul {

namespace {

// C's dims must stretch to [m, n] (each of its trailing dims 1 or equal).
bool c_broadcasts(const Shape& c, const Dim& m, const Dim& n) {
  if (c.size() > 2) return false;
  Shape target{m, n};
  size_t off = 2 - c.size();
  for (size_t i = 0; i < c.size(); ++i) {
    const Dim& d = c[i];
    const Dim& t = target[off + i];
    if (d.known() && t.known() && d.value != 1 && d.value != t.value) return false;
  }
  return true;
}

template <typename T>
void gemm_typed(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const T* a, const T* b,
                double beta, const T* c, const std::vector<int64_t>& cs, T* y) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      auto av = [&](int64_t p) { return ta ? a[p * m + i] : a[i * k + p]; };
      auto bv = [&](int64_t p) { return tb ? b[j * k + p] : b[p * n + j]; };
      T* o = y + i * n + j;
      if constexpr (std::is_integral_v<T>) {
        uint64_t s = 0;
        for (int64_t p = 0; p < k; ++p)
          s += static_cast<uint64_t>(static_cast<int64_t>(av(p))) * static_cast<uint64_t>(static_cast<int64_t>(bv(p)));
        T r = alpha == 1.0 ? static_cast<T>(s) : static_cast<T>(alpha * static_cast<double>(static_cast<T>(s)));
        if (c) {
          T cv = c[i * cs[0] + j * cs[1]];
          r = static_cast<T>(r + (beta == 1.0 ? cv : static_cast<T>(beta * static_cast<double>(cv))));
        }
        *o = r;
      } else {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += static_cast<double>(av(p)) * static_cast<double>(bv(p));
        double r = alpha * s;
        if (c) r += beta * static_cast<double>(c[i * cs[0] + j * cs[1]]);
        if constexpr (std::is_same_v<T, double>) *o = r;
        else *o = static_cast<T>(static_cast<float>(r));
      }
    }
}

}  // namespace

Status infer_gemm(InferContext& ctx) {
  if (!ctx.has_input(0) || !ctx.has_input(1)) return ctx.error("needs inputs A and B");
  DataType t = ctx.input_dtype(0);
  if (t != DataType::kUndefined && ctx.input_dtype(1) != DataType::kUndefined && ctx.input_dtype(1) != t)
    return ctx.error(std::string("A is ") + dtype_name(t) + " but B is " + dtype_name(ctx.input_dtype(1)));
  if (t == DataType::kString || t == DataType::kBool) return ctx.unsupported(std::string("dtype ") + dtype_name(t));
  bool ta = ctx.attrs().get_int("transA", 0) != 0, tb = ctx.attrs().get_int("transB", 0) != 0;
  const Shape* a = ctx.input_shape(0);
  const Shape* b = ctx.input_shape(1);
  if ((a && a->size() != 2) || (b && b->size() != 2)) return ctx.error("A and B must be 2-D");
  Dim m = a ? (ta ? (*a)[1] : (*a)[0]) : Dim::unknown();
  Dim ka = a ? (ta ? (*a)[0] : (*a)[1]) : Dim::unknown();
  Dim kb = b ? (tb ? (*b)[1] : (*b)[0]) : Dim::unknown();
  Dim n = b ? (tb ? (*b)[0] : (*b)[1]) : Dim::unknown();
  if (ka.known() && kb.known() && ka.value != kb.value)
    return ctx.error("inner dims differ: A " + shape_to_string(*a) + " vs B " + shape_to_string(*b));
  if (ctx.has_input(2)) {
    if (ctx.input_dtype(2) != DataType::kUndefined && t != DataType::kUndefined && ctx.input_dtype(2) != t)
      return ctx.error("C dtype differs from A's");
    const Shape* c = ctx.input_shape(2);
    if (c && !c_broadcasts(*c, m, n))
      return ctx.error("C " + shape_to_string(*c) + " does not broadcast to [M, N]");
  }
  ctx.set_output(0, t, Shape{m, n});
  return Status();
}

Status ref_gemm(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  bool ta = ctx.attrs().get_int("transA", 0) != 0, tb = ctx.attrs().get_int("transB", 0) != 0;
  if (a.rank() != 2 || b.rank() != 2) return ctx.error("A and B must be 2-D");
  if (a.dtype() != b.dtype()) return ctx.error("A and B dtypes differ");
  int64_t m = ta ? a.dim(1) : a.dim(0), k = ta ? a.dim(0) : a.dim(1);
  int64_t n = tb ? b.dim(0) : b.dim(1);
  if ((tb ? b.dim(1) : b.dim(0)) != k) return ctx.error("inner dims of A and B differ");
  const Tensor* c = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  std::vector<int64_t> cs{0, 0};
  if (c) {
    if (c->dtype() != a.dtype()) return ctx.error("C dtype differs from A's");
    Dims out{m, n};
    if (c->rank() > 2 || !c_broadcasts(shape_from_dims(c->dims()), Dim(m), Dim(n)))
      return ctx.error("C " + dims_to_string(c->dims()) + " does not broadcast to " + dims_to_string(out));
    cs = broadcast_strides(c->dims(), out);
  }
  double alpha = ctx.attrs().get_float("alpha", 1.f), beta = ctx.attrs().get_float("beta", 1.f);
  Tensor& y = ctx.output(0);
  KILN_DISPATCH_NUMERIC(a.dtype(), T,
                        gemm_typed<T>(ta, tb, m, n, k, alpha, a.data_as<T>(), b.data_as<T>(), beta,
                                      c ? c->data_as<T>() : nullptr, cs, y.data_as<T>()));
  return Status();
}

}  // namespace kiln::ops::matmul

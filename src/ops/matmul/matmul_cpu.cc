// Fast float32 MatMul / FusedMatMul / Gemm on kiln's own blocked GEMM.
#include <cstring>

#include "backends/cpu/gemm.h"
#include "backends/cpu/thread_pool.h"
#include "ops/matmul/matmul_internal.h"

namespace kiln::ops::matmul {

void matmul_f32_gemm(const MatMulDims& g, float alpha, const float* a, const float* b, float* c, int threads) {
  const int64_t m = g.m, n = g.n, k = g.k, batch = g.batch();
  if (batch == 0 || m == 0 || n == 0) return;
  const int64_t lda = g.trans_a ? m : k, ldb = g.trans_b ? k : n;
  if (g.folds_into_m()) {
    cpu::sgemm(false, g.trans_b, batch * m, n, k, alpha, a, k, b, ldb, 0.f, c, n, threads);
    return;
  }
  // Many small products (attention heads): one per thread; large ones share the pool.
  if (batch > 1 && m * n * k < 256 * 256 * 64) {
    cpu::parallel_for(batch, [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i)
        cpu::sgemm(g.trans_a, g.trans_b, m, n, k, alpha, a + g.a_offsets[i], lda, b + g.b_offsets[i], ldb, 0.f,
                   c + i * m * n, n, 1);
    }, threads);
    return;
  }
  for (int64_t i = 0; i < batch; ++i)
    cpu::sgemm(g.trans_a, g.trans_b, m, n, k, alpha, a + g.a_offsets[i], lda, b + g.b_offsets[i], ldb, 0.f,
               c + i * m * n, n, threads);
}

namespace {

Status run_f32(KernelContext& ctx, bool ta, bool tb, float alpha) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  if (a.dtype() != DataType::kFloat32 || b.dtype() != DataType::kFloat32) return ctx.error("cpu.gemm needs float32");
  auto g = matmul_dims(a.dims(), b.dims(), ta, tb);
  if (!g.ok()) return ctx.error(g.status().message());
  matmul_f32_gemm(*g, alpha, a.data_as<float>(), b.data_as<float>(), ctx.output(0).data_as<float>(),
                  ctx.num_threads());
  return Status();
}

}  // namespace

Status cpu_gemm_matmul(KernelContext& ctx) { return run_f32(ctx, false, false, 1.f); }

Status cpu_gemm_fused_matmul(KernelContext& ctx) {
  if (ctx.attrs().get_int("transBatchA", 0) || ctx.attrs().get_int("transBatchB", 0))
    return ctx.error("transBatchA/transBatchB are not supported", ErrorCode::kUnsupported);
  return run_f32(ctx, ctx.attrs().get_int("transA", 0) != 0, ctx.attrs().get_int("transB", 0) != 0,
                 ctx.attrs().get_float("alpha", 1.f));
}

Status prefill_gemm_c(KernelContext& ctx, int64_t m, int64_t n, float* y, float& beta) {
  if (!ctx.has_input(2) || beta == 0.f) {
    beta = 0.f;
    return Status();
  }
  const Tensor& c = ctx.input(2);
  Dims out{m, n};
  if (c.rank() > 2) return ctx.error("C must have rank <= 2");
  for (int64_t i = 0; i < c.rank(); ++i)
    if (c.dim(i) != 1 && c.dim(i) != out[2 - c.rank() + i]) return ctx.error("C does not broadcast to [M, N]");
  auto cs = broadcast_strides(c.dims(), out);
  const float* cp = c.data_as<float>();
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) y[i * n + j] = cp[i * cs[0] + j * cs[1]];
  return Status();
}

Status cpu_gemm_gemm(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  bool ta = ctx.attrs().get_int("transA", 0) != 0, tb = ctx.attrs().get_int("transB", 0) != 0;
  if (a.rank() != 2 || b.rank() != 2) return ctx.error("A and B must be 2-D");
  int64_t m = ta ? a.dim(1) : a.dim(0), k = ta ? a.dim(0) : a.dim(1);
  int64_t n = tb ? b.dim(0) : b.dim(1);
  if ((tb ? b.dim(1) : b.dim(0)) != k) return ctx.error("inner dims of A and B differ");
  float alpha = ctx.attrs().get_float("alpha", 1.f), beta = ctx.attrs().get_float("beta", 1.f);
  float* y = ctx.output(0).data_as<float>();
  KILN_RETURN_IF_ERROR(prefill_gemm_c(ctx, m, n, y, beta));
  cpu::sgemm(ta, tb, m, n, k, alpha, a.data_as<float>(), ta ? m : k, b.data_as<float>(), tb ? k : n, beta, y, n,
             ctx.num_threads());
  return Status();
}

}  // namespace kiln::ops::matmul

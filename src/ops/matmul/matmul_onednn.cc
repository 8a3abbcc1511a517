// oneDNN float32 MatMul and Gemm. Batch patterns oneDNN cannot express
// (partial broadcast of both operands) fall back to kiln's own GEMM.
#ifdef KILN_HAVE_DNNL
#include "backends/cpu/onednn.h"
#include "ops/matmul/matmul_internal.h"

namespace kiln::ops::matmul {

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

// Every batch uses matrix i (stride `step`) or all share matrix 0.
enum class BatchKind { kShared, kFull, kOther };

BatchKind batch_kind(const std::vector<int64_t>& offsets, int64_t step) {
  bool shared = true, full = true;
  for (size_t i = 0; i < offsets.size(); ++i) {
    if (offsets[i] != 0) shared = false;
    if (offsets[i] != static_cast<int64_t>(i) * step) full = false;
  }
  return shared ? BatchKind::kShared : full ? BatchKind::kFull : BatchKind::kOther;
}

// op(A) is [b, m, k]: strides follow the storage order.
memory::desc operand_desc(int64_t b, int64_t rows, int64_t cols, bool trans) {
  memory::dims dims{b, rows, cols};
  memory::dims strides = trans ? memory::dims{rows * cols, 1, rows} : memory::dims{rows * cols, cols, 1};
  return memory::desc(dims, dt::f32, strides);
}

Status run_matmul(const MatMulDims& g, float alpha, const float* a, const float* b, float* c, float beta,
                  const std::string& node) {
  BatchKind ak = batch_kind(g.a_offsets, g.m * g.k), bk = batch_kind(g.b_offsets, g.k * g.n);
  int64_t batch = g.batch();
  try {
    auto& eng = cpu::dnnl_engine();
    memory::desc a_md = operand_desc(ak == BatchKind::kShared ? 1 : batch, g.m, g.k, g.trans_a);
    memory::desc b_md = operand_desc(bk == BatchKind::kShared ? 1 : batch, g.k, g.n, g.trans_b);
    memory::desc c_md({batch, g.m, g.n}, dt::f32, tag::abc);
    dnnl::primitive_attr attr;
    if (alpha != 1.f) attr.set_output_scales(0, {alpha});
    if (beta != 0.f) {
      dnnl::post_ops po;
      po.append_sum(beta);
      attr.set_post_ops(po);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, eng);
    dnnl::matmul prim(pd);
    memory am(a_md, eng, const_cast<float*>(a)), bm(b_md, eng, const_cast<float*>(b)), cm(c_md, eng, c);
    auto& s = cpu::dnnl_stream();
    prim.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    s.wait();
  } catch (const dnnl::error& e) {
    return cpu::dnnl_status(e, "node " + node + ": oneDNN matmul");
  }
  return Status();
}

}  // namespace

Status onednn_matmul(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  if (a.dtype() != DataType::kFloat32 || b.dtype() != DataType::kFloat32) return ctx.error("cpu.onednn needs float32");
  auto g = matmul_dims(a.dims(), b.dims(), false, false);
  if (!g.ok()) return ctx.error(g.status().message());
  if (g->batch() == 0 || g->m == 0 || g->n == 0) return Status();
  if (g->k == 0 || batch_kind(g->a_offsets, g->m * g->k) == BatchKind::kOther ||
      batch_kind(g->b_offsets, g->k * g->n) == BatchKind::kOther)
    return cpu_gemm_matmul(ctx);
  return run_matmul(*g, 1.f, a.data_as<float>(), b.data_as<float>(), ctx.output(0).data_as<float>(), 0.f,
                    ctx.node().describe());
}

Status onednn_gemm(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  bool ta = ctx.attrs().get_int("transA", 0) != 0, tb = ctx.attrs().get_int("transB", 0) != 0;
  if (a.rank() != 2 || b.rank() != 2) return ctx.error("A and B must be 2-D");
  int64_t m = ta ? a.dim(1) : a.dim(0), k = ta ? a.dim(0) : a.dim(1);
  int64_t n = tb ? b.dim(0) : b.dim(1);
  if ((tb ? b.dim(1) : b.dim(0)) != k) return ctx.error("inner dims of A and B differ");
  if (m == 0 || n == 0 || k == 0) return cpu_gemm_gemm(ctx);
  float alpha = ctx.attrs().get_float("alpha", 1.f), beta = ctx.attrs().get_float("beta", 1.f);
  float* y = ctx.output(0).data_as<float>();
  KILN_RETURN_IF_ERROR(prefill_gemm_c(ctx, m, n, y, beta));
  MatMulDims g;
  g.m = m;
  g.n = n;
  g.k = k;
  g.trans_a = ta;
  g.trans_b = tb;
  g.a_offsets = {0};
  g.b_offsets = {0};
  return run_matmul(g, alpha, a.data_as<float>(), b.data_as<float>(), y, beta, ctx.node().describe());
}

}  // namespace kiln::ops::matmul
#endif

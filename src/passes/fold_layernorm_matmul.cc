// A pre-norm block's LayerNorm folded into the GEMMs around it (FP16 CUDA engines on sm_90 GPUs,
// kiln built with CUTLASS; large row counts only):
//   s = MatMulBias(x, W0, b0, r)                     s, st = MatMulBiasRowStats(x, W0^T, b0, r)
//   y = LayerNormalization(s, gamma, beta)   becomes
//   z = MatMulBias(y, W, b [, act])                  z = NormMatMulBias(s, st, (W diag(gamma))^T, s', b')
// with s' the row sums of (W diag(gamma))^T and b' = W^T beta + b (norm_gemm.h has the algebra):
// the GEMM that writes s also sums its rows, and the next GEMM reads s itself, so LN(s) is never
// written or read. y must be read only by that MatMulBias; s keeps its other readers (the residual
// stream). ViT-B/16's 22 in-layer LayerNorms that follow a residual GEMM are these.
//
// When: at ViT-B/16 bs256 (50,432 rows) on the H100, which then runs at its 700 W power cap, a
// layer's GEMMs and LayerNorms took 1.301 ms this way against 1.382 (bench/RESULTS.md, session 30),
// though each CUTLASS GEMM loses to cuBLASLt in the builder's one-launch timings: the gain is in
// energy, and the builder cannot see it. So the pass decides by size: at least kMinRows rows at the
// opt shape (KILN_NORM_FOLD_MIN_ROWS overrides; KILN_DISABLE_PASSES=fold_layernorm_matmul turns it off).
#include <cmath>
#include <set>

#include "backends/cuda/device.h"
#include "base/env.h"
#include "ops/matmul/norm_gemm.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

constexpr int64_t kMinRows = 16384;

bool is_matmul_bias(const ir::Node* n, size_t inputs) {
  return n && n->domain == "kiln" && n->op_type == "MatMulBias" && n->inputs.size() == inputs &&
         n->outputs.size() == 1 && n->outputs[0];
}

// A constant 2-D [K, N] or 1-D [N] tensor of dtype t.
const Tensor* constant(const ir::Value* v, DataType t, size_t rank) {
  if (!v || !v->initializer || v->dtype != t || static_cast<size_t>(v->initializer->rank()) != rank) return nullptr;
  return v->initializer.get();
}

// Rows of v at the opt shape (all dims but the last), or -1 where unknown.
int64_t opt_rows(const ir::Value* v, const Propagation& opt) {
  const Shape* s = opt_shape(v, opt);
  if (!s) s = v->shape ? &*v->shape : nullptr;
  if (!s || s->empty()) return -1;
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < s->size(); ++i) {
    if (!(*s)[i].known()) return -1;
    rows *= (*s)[i].value;
  }
  return rows;
}

// Whether the engine's device runs the CUTLASS kernels.
bool device_takes(const BuilderConfig& cfg) {
  if (!ops::matmul::norm_gemm::built()) return false;
  auto info = cuda::device_info(cfg.device_index());
  return info.ok() && info->cc_major == 9 && info->cc_minor == 0;
}

// W [K, N] as [N, K] (with column c scaled by scale[c] when given), in W's dtype.
Tensor transposed(const Tensor& w, const Tensor* scale) {
  const int64_t k = w.dim(0), n = w.dim(1);
  Tensor out = Tensor::empty(w.dtype(), {n, k});
  for (int64_t c = 0; c < n; ++c)
    for (int64_t kk = 0; kk < k; ++kk)
      out.set_from_double(c * k + kk, w.get_as_double(kk * n + c) * (scale ? scale->get_as_double(kk) : 1.0));
  return out;
}

Tensor to_f32(const Tensor& v) {
  Tensor out = Tensor::empty(DataType::kFloat32, v.dims());
  for (int64_t i = 0; i < v.numel(); ++i) out.set_from_double(i, v.get_as_double(i));
  return out;
}

}  // namespace

Status fold_layernorm_matmul(ir::Graph& g, PassContext& ctx) {
  const BuilderConfig* cfg = ctx.config;
  // KILN_NORM_FOLD_ANY_DEVICE=1: fold whatever the device (the pass's CPU tests; the ops' fallback
  // kernels run anywhere, just slower).
  if (!cfg || cfg->device() != DeviceType::kCUDA || !cfg->get_flag(BuilderFlag::kFP16) ||
      (!env_is("KILN_NORM_FOLD_ANY_DEVICE", "1") && !device_takes(*cfg)))
    return Status();
  const int64_t min_rows = env_int("KILN_NORM_FOLD_MIN_ROWS").value_or(kMinRows);
  const Propagation opt = opt_types(g, *cfg);
  std::set<const ir::Node*> removed;
  int folded = 0;
  std::vector<ir::Node*> norms;
  for (auto& n : g.nodes())
    if (n->domain.empty() && n->op_type == "LayerNormalization") norms.push_back(n.get());
  for (ir::Node* ln : norms) {
    // LayerNormalization(s, gamma, beta) over the last axis, only its first output used.
    if (ln->inputs.size() != 3 || ln->outputs.empty() || !ln->outputs[0]) continue;
    if ((ln->outputs.size() > 1 && ln->outputs[1]) || (ln->outputs.size() > 2 && ln->outputs[2])) continue;
    ir::Value *s = ln->inputs[0], *y = ln->outputs[0];
    if (!s || s->dtype != DataType::kFloat16 || !s->shape || s->shape->empty() || !s->shape->back().known()) continue;
    const int64_t rank = static_cast<int64_t>(s->shape->size()), axis = ln->attrs.get_int("axis", -1);
    if (axis != -1 && axis != rank - 1) continue;
    const int64_t n = s->shape->back().value;
    const Tensor *gamma = constant(ln->inputs[1], DataType::kFloat16, 1),
                 *beta = constant(ln->inputs[2], DataType::kFloat16, 1);
    if (!gamma || !beta || gamma->numel() != n || beta->numel() != n) continue;
    // The producer: s = MatMulBias(x, W0, b0, r), W0 [K0, n].
    ir::Node* prod = s->producer;
    if (!is_matmul_bias(prod, 4) || !prod->attrs.get_string("activation", "").empty() || removed.count(prod)) continue;
    const Tensor *w0 = constant(prod->inputs[1], DataType::kFloat16, 2),
                 *b0 = constant(prod->inputs[2], DataType::kFloat16, 1);
    if (!w0 || !b0 || w0->dim(1) != n || b0->numel() != n) continue;
    // The consumer: z = MatMulBias(y, W, b [, act]), W [n, N2], the only reader of y.
    ir::Node* cons = only_reader(g, y);
    if (!is_matmul_bias(cons, 3) || cons->inputs[0] != y || removed.count(cons)) continue;
    const Tensor *w = constant(cons->inputs[1], DataType::kFloat16, 2),
                 *b = constant(cons->inputs[2], DataType::kFloat16, 1);
    if (!w || !b || w->dim(0) != n || b->numel() != w->dim(1)) continue;
    const std::string act = cons->attrs.get_string("activation", "");
    if (!act.empty() && act != "GeluTanh") continue;
    if (env_is("KILN_NORM_FOLD_ONLY_ACT", "1") && act.empty()) continue;  // measuring: the MLP's LayerNorm only
    const int64_t k0 = w0->dim(0), n2 = w->dim(1);
    if (!ops::matmul::norm_gemm::takes(1, n, k0) || !ops::matmul::norm_gemm::takes(1, n2, n)) continue;
    const int64_t rows = opt_rows(s, opt);
    if (rows < min_rows || rows % 4 != 0) continue;

    // The folded weights: W' = (W diag(gamma))^T as stored (fp16), s' its rows' sums, b' = W^T beta + b.
    Tensor wf = transposed(*w, gamma);
    Tensor sv = Tensor::empty(DataType::kFloat32, {n2}), bp = Tensor::empty(DataType::kFloat32, {n2});
    for (int64_t c = 0; c < n2; ++c) {
      double sum = 0, bsum = b->get_as_double(c);
      for (int64_t kk = 0; kk < n; ++kk) {
        sum += wf.get_as_double(c * n + kk);
        bsum += w->get_as_double(kk * n2 + c) * beta->get_as_double(kk);
      }
      sv.set_from_double(c, sum), bp.set_from_double(c, bsum);
    }
    const std::vector<std::string> prod_names = fused_names({prod});
    const std::vector<std::string> cons_names = fused_names({ln, cons});
    ir::Value* stats = g.add_unique_value(s->name + "_row_stats", DataType::kFloat32);
    Dim stat_rows(1);  // symbolic where s's dims are
    for (size_t i = 0; i + 1 < s->shape->size(); ++i) stat_rows = dim_mul(stat_rows, (*s->shape)[i]);
    stats->shape = Shape{Dim(4), stat_rows};
    const float epsilon = ln->attrs.get_float("epsilon", 1e-5f);
    prod->op_type = "MatMulBiasRowStats";
    prod->inputs[1] = g.add_constant(prod->name + "_w_nk", transposed(*w0, nullptr));
    prod->inputs[2] = g.add_constant(prod->name + "_bias_f32", to_f32(*b0));
    prod->outputs = {s, stats};
    stats->producer = prod;
    prod->attrs = ir::Attributes();
    prod->attrs.set("epsilon", ir::Attribute::from_float(epsilon));
    set_fused_names(*prod, prod_names);

    cons->op_type = "NormMatMulBias";
    cons->inputs = {s, stats, g.add_constant(cons->name + "_w_folded", std::move(wf)),
                    g.add_constant(cons->name + "_s", std::move(sv)),
                    g.add_constant(cons->name + "_b_folded", std::move(bp))};
    cons->attrs = ir::Attributes();
    if (!act.empty()) cons->attrs.set("activation", ir::Attribute::from_string(act));
    set_fused_names(*cons, cons_names);
    removed.insert(ln);
    ++folded;
  }
  if (!folded) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) != 0; });
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  ctx.stats["folded_layernorms"] += folded;
  return Status();
}

}  // namespace kiln::passes

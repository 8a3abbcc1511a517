// The ai.onnx.preview.training optimizers Adagrad, Adam and Momentum (opset 1):
// one update step of n tensors. Inputs are R (learning rate), T (update count),
// then the per-tensor groups laid out kind by kind: X1..Xn, G1..Gn, then the state
// (H1..Hn; Adam: V1..Vn, H1..Hn). Outputs are X1_new..Xn_new, then the new state
// in the input order.
#include <cmath>

#include "ops/common.h"

namespace kiln::ops {
namespace {

bool is_optimizer_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat64; }

// `groups` = tensors per optimized variable among the inputs (X, G and the state).
// Outputs hold every group but G, so there are (groups - 1) * n of them.
Status infer_optimizer(InferContext& ctx, size_t groups) {
  const size_t n_in = ctx.num_inputs();
  if (n_in < 2 + groups || (n_in - 2) % groups != 0)
    return ctx.error("expects R, T and " + std::to_string(groups) + " inputs per optimized tensor, got " +
                     std::to_string(n_in) + " inputs");
  const size_t n = (n_in - 2) / groups;
  if (ctx.num_outputs() != (groups - 1) * n)
    return ctx.error("expects " + std::to_string((groups - 1) * n) + " outputs for " + std::to_string(n) +
                     " optimized tensors, got " + std::to_string(ctx.num_outputs()));
  for (size_t i = 0; i < n_in; ++i)
    if (!ctx.has_input(i)) return ctx.error("input " + std::to_string(i) + " is required");
  if (!is_optimizer_float(ctx.input_dtype(0)))
    return ctx.unsupported(std::string("R of dtype ") + dtype_name(ctx.input_dtype(0)) + " (expected float or double)");
  if (ctx.input_dtype(1) != DataType::kInt64) return ctx.error("T must be int64");
  for (size_t s : {0, 1})
    if (const Shape* sh = ctx.input_shape(s); sh && sh->size() > 1)
      return ctx.error(std::string(s == 0 ? "R" : "T") + " must be a scalar");
  for (size_t i = 0; i < n; ++i) {
    const DataType t = ctx.input_dtype(2 + i);
    if (!is_optimizer_float(t))
      return ctx.unsupported(std::string("X of dtype ") + dtype_name(t) + " (expected float or double)");
    for (size_t g = 1; g < groups; ++g)
      if (ctx.input_dtype(2 + g * n + i) != t)
        return ctx.error("tensor group " + std::to_string(g) + " must match X's dtype");
    for (size_t o = 0; o + 1 < groups; ++o) ctx.set_output(o * n + i, t, ctx.input(2 + i).shape);
  }
  return Status();
}

Status infer_adagrad(InferContext& ctx) { return infer_optimizer(ctx, 3); }
Status infer_adam(InferContext& ctx) { return infer_optimizer(ctx, 4); }
Status infer_momentum(InferContext& ctx) {
  for (const char* a : {"alpha", "beta", "mode", "norm_coefficient"})
    if (!ctx.attrs().has(a)) return ctx.error(std::string("attribute '") + a + "' is required");
  const std::string mode = ctx.attrs().get_string("mode", "");
  if (mode != "standard" && mode != "nesterov")
    return ctx.error("mode must be 'standard' or 'nesterov', got '" + mode + "'");
  return infer_optimizer(ctx, 3);
}

// Reads R and T and checks that every group of tensor i has X_i's dims.
Status read_common(KernelContext& ctx, size_t groups, double& r, int64_t& t, size_t& n) {
  const Tensor& R = ctx.input(0);
  const Tensor& T = ctx.input(1);
  if (R.numel() != 1 || T.numel() != 1) return ctx.error("R and T must be scalars");
  r = R.get_as_double(0);
  t = T.get_as_int64(0);
  n = (ctx.num_inputs() - 2) / groups;
  for (size_t i = 0; i < n; ++i)
    for (size_t g = 1; g < groups; ++g)
      if (ctx.input(2 + g * n + i).dims() != ctx.input(2 + i).dims())
        return ctx.error("input " + std::to_string(2 + g * n + i) + " has shape " +
                         dims_to_string(ctx.input(2 + g * n + i).dims()) + ", expected X's " +
                         dims_to_string(ctx.input(2 + i).dims()));
  return Status();
}

// Element-wise arithmetic runs in T, as the ONNX reference does with numpy's
// float32 arrays and (weak) Python-float attributes; scalar factors in double.
template <typename T>
void adagrad_step(int64_t len, const T* x, const T* g, const T* h, T* x_new, T* h_new, double r, T norm, T eps) {
  for (int64_t k = 0; k < len; ++k) {
    const T gr = norm * x[k] + g[k];
    const T hn = h[k] + gr * gr;
    const T hs = static_cast<T>(std::sqrt(hn)) + eps;
    h_new[k] = hn;
    x_new[k] = static_cast<T>(static_cast<double>(x[k]) - r * static_cast<double>(gr) / static_cast<double>(hs));
  }
}

Status ref_adagrad(KernelContext& ctx) {
  double r;
  int64_t t;
  size_t n;
  if (Status s = read_common(ctx, 3, r, t, n); !s.ok()) return s;
  const double decay = ctx.attrs().get_float("decay_factor", 0.0f);
  const float norm = ctx.attrs().get_float("norm_coefficient", 0.0f);
  const float eps = ctx.attrs().get_float("epsilon", 1e-6f);
  const double r_adj = r / (1.0 + static_cast<double>(t) * decay);
  for (size_t i = 0; i < n; ++i) {
    const Tensor& X = ctx.input(2 + i);
    const Tensor& G = ctx.input(2 + n + i);
    const Tensor& H = ctx.input(2 + 2 * n + i);
    Tensor& Xo = ctx.output(i);
    Tensor& Ho = ctx.output(n + i);
    if (X.dtype() == DataType::kFloat32)
      adagrad_step<float>(X.numel(), X.data_as<float>(), G.data_as<float>(), H.data_as<float>(), Xo.data_as<float>(),
                          Ho.data_as<float>(), r_adj, norm, eps);
    else
      adagrad_step<double>(X.numel(), X.data_as<double>(), G.data_as<double>(), H.data_as<double>(),
                           Xo.data_as<double>(), Ho.data_as<double>(), r_adj, norm, eps);
  }
  return Status();
}

struct AdamCoeffs {
  double r_adj;
  float norm, norm_post, alpha, beta, eps;
};

template <typename T>
void adam_step(int64_t len, const T* x, const T* g, const T* v, const T* h, T* x_new, T* v_new, T* h_new,
               const AdamCoeffs& c) {
  const T norm = c.norm, alpha = c.alpha, beta = c.beta, eps = c.eps;
  const T one_m_alpha = static_cast<T>(1.0 - static_cast<double>(c.alpha));
  const T one_m_beta = static_cast<T>(1.0 - static_cast<double>(c.beta));
  const double post = 1.0 - static_cast<double>(c.norm_post);
  for (int64_t k = 0; k < len; ++k) {
    const T gr = norm * x[k] + g[k];
    const T vn = alpha * v[k] + one_m_alpha * gr;
    const T hn = beta * h[k] + one_m_beta * (gr * gr);
    const T hs = static_cast<T>(std::sqrt(hn)) + eps;
    v_new[k] = vn;
    h_new[k] = hn;
    const double xn = static_cast<double>(x[k]) - c.r_adj * static_cast<double>(vn / hs);
    x_new[k] = static_cast<T>(post * xn);
  }
}

Status ref_adam(KernelContext& ctx) {
  double r;
  int64_t t;
  size_t n;
  if (Status s = read_common(ctx, 4, r, t, n); !s.ok()) return s;
  AdamCoeffs c;
  c.norm = ctx.attrs().get_float("norm_coefficient", 0.0f);
  c.norm_post = ctx.attrs().get_float("norm_coefficient_post", 0.0f);
  c.alpha = ctx.attrs().get_float("alpha", 0.9f);
  c.beta = ctx.attrs().get_float("beta", 0.999f);
  c.eps = ctx.attrs().get_float("epsilon", 1e-6f);
  // Bias correction of both moments folded into the learning rate (from the second step on).
  c.r_adj = t > 0 ? r * std::sqrt(1.0 - std::pow(static_cast<double>(c.beta), static_cast<double>(t))) /
                        (1.0 - std::pow(static_cast<double>(c.alpha), static_cast<double>(t)))
                  : r;
  for (size_t i = 0; i < n; ++i) {
    const Tensor& X = ctx.input(2 + i);
    const Tensor& G = ctx.input(2 + n + i);
    const Tensor& V = ctx.input(2 + 2 * n + i);
    const Tensor& H = ctx.input(2 + 3 * n + i);
    Tensor& Xo = ctx.output(i);
    Tensor& Vo = ctx.output(n + i);
    Tensor& Ho = ctx.output(2 * n + i);
    if (X.dtype() == DataType::kFloat32)
      adam_step<float>(X.numel(), X.data_as<float>(), G.data_as<float>(), V.data_as<float>(), H.data_as<float>(),
                       Xo.data_as<float>(), Vo.data_as<float>(), Ho.data_as<float>(), c);
    else
      adam_step<double>(X.numel(), X.data_as<double>(), G.data_as<double>(), V.data_as<double>(), H.data_as<double>(),
                        Xo.data_as<double>(), Vo.data_as<double>(), Ho.data_as<double>(), c);
  }
  return Status();
}

template <typename T>
void momentum_step(int64_t len, const T* x, const T* g, const T* v, T* x_new, T* v_new, T r, T norm, T alpha, T beta,
                   bool nesterov) {
  for (int64_t k = 0; k < len; ++k) {
    const T gr = norm * x[k] + g[k];
    const T vn = alpha * v[k] + beta * gr;
    v_new[k] = vn;
    x_new[k] = nesterov ? x[k] - r * (gr + alpha * vn) : x[k] - r * vn;
  }
}

Status ref_momentum(KernelContext& ctx) {
  double r;
  int64_t t;
  size_t n;
  if (Status s = read_common(ctx, 3, r, t, n); !s.ok()) return s;
  const float norm = ctx.attrs().get_float("norm_coefficient", 0.0f);
  const float alpha = ctx.attrs().get_float("alpha", 0.0f);
  // The first step (T == 0) takes the whole gradient.
  const float beta = t > 0 ? ctx.attrs().get_float("beta", 1.0f) : 1.0f;
  const bool nesterov = ctx.attrs().get_string("mode", "standard") == "nesterov";
  for (size_t i = 0; i < n; ++i) {
    const Tensor& X = ctx.input(2 + i);
    const Tensor& G = ctx.input(2 + n + i);
    const Tensor& V = ctx.input(2 + 2 * n + i);
    Tensor& Xo = ctx.output(i);
    Tensor& Vo = ctx.output(n + i);
    if (X.dtype() == DataType::kFloat32)
      momentum_step<float>(X.numel(), X.data_as<float>(), G.data_as<float>(), V.data_as<float>(), Xo.data_as<float>(),
                           Vo.data_as<float>(), static_cast<float>(r), norm, alpha, beta, nesterov);
    else
      momentum_step<double>(X.numel(), X.data_as<double>(), G.data_as<double>(), V.data_as<double>(),
                            Xo.data_as<double>(), Vo.data_as<double>(), r, norm, alpha, beta, nesterov);
  }
  return Status();
}

constexpr const char* kTrainingDomain = "ai.onnx.preview.training";

}  // namespace

void register_training_ops(OpRegistry& r) {
  r.add({.name = "Adagrad", .domain = kTrainingDomain, .infer = infer_adagrad, .ref = ref_adagrad});
  r.add({.name = "Adam", .domain = kTrainingDomain, .infer = infer_adam, .ref = ref_adam});
  r.add({.name = "Momentum", .domain = kTrainingDomain, .infer = infer_momentum, .ref = ref_momentum});
}

}  // namespace kiln::ops

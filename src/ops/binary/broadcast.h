// Numpy broadcasting for elementwise ops: shape inference over several inputs,
// a readable reference loop, and a fast loop that coalesces dims so the inner
// loop runs contiguous (or with one operand held constant).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ops/unary/eltwise.h"

namespace kiln::ops {

/// Opset < 7 binary ops broadcast with `broadcast`/`axis` attributes; kiln only
/// accepts them when they ask for no broadcasting.
inline Status check_legacy_broadcast(const InferContext& ctx) {
  if (ctx.opset() < 7 && ctx.attrs().get_int("broadcast", 0) != 0)
    return ctx.unsupported("the legacy (opset < 7) broadcast attribute is not supported");
  return Status();
}

/// Broadcast shape of the present inputs in `inputs`; nullopt when a rank is unknown.
inline Status infer_broadcast_shape(const InferContext& ctx, const std::vector<size_t>& inputs,
                                    std::optional<Shape>& out) {
  std::vector<const Shape*> shapes;
  for (size_t i : inputs) {
    if (!ctx.has_input(i)) continue;
    const Shape* s = ctx.input_shape(i);
    if (!s) {
      out = std::nullopt;
      return Status();
    }
    shapes.push_back(s);
  }
  auto r = broadcast_shapes(shapes);
  if (!r) {
    std::string msg = "input shapes cannot be broadcast together:";
    for (const Shape* s : shapes) {
      msg += ' ';
      msg += shape_to_string(*s);
    }
    return ctx.error(msg);
  }
  out = std::move(r);
  return Status();
}

/// Checks at run time that the inputs broadcast exactly to `out`'s dims.
inline Status check_broadcast_to(const KernelContext& ctx, const std::vector<const Tensor*>& ins, const Tensor& out) {
  std::vector<Dims> dims;
  for (const Tensor* t : ins) dims.push_back(t->dims());
  Dims b;
  if (!broadcast_dims(dims, b) || b != out.dims()) {
    std::string msg = "input dims do not broadcast to the output dims " + dims_to_string(out.dims()) + ":";
    for (const Tensor* t : ins) {
      msg += ' ';
      msg += dims_to_string(t->dims());
    }
    return ctx.error(msg);
  }
  return Status();
}

/// A loop nest over `out` for several operands read with broadcast strides:
/// dims of size 1 are dropped and neighbouring dims merged wherever every
/// operand stays linear across them, leaving `outer` dims and one inner loop.
/// Each operand's inner stride is then 0 (broadcast) or 1 (contiguous).
struct BroadcastPlan {
  Dims outer;
  std::vector<std::vector<int64_t>> outer_strides;  ///< per operand, over `outer`
  int64_t inner = 1;
  std::vector<int64_t> inner_strides;  ///< per operand (0 = held constant)
  int64_t outer_count() const { return dims_volume(outer); }
};

inline BroadcastPlan plan_broadcast(const Dims& out, const std::vector<const Dims*>& ins) {
  const size_t k = ins.size();
  std::vector<std::vector<int64_t>> strides;
  for (const Dims* d : ins) strides.push_back(broadcast_strides(*d, out));
  // Groups from innermost outwards: size and per-operand stride.
  std::vector<int64_t> sizes;
  std::vector<std::vector<int64_t>> gstrides;
  for (int64_t i = static_cast<int64_t>(out.size()) - 1; i >= 0; --i) {
    if (out[i] == 1) continue;
    bool merge = !sizes.empty();
    for (size_t j = 0; j < k && merge; ++j) merge = strides[j][i] == gstrides.back()[j] * sizes.back();
    if (merge) {
      sizes.back() *= out[i];
      continue;
    }
    sizes.push_back(out[i]);
    std::vector<int64_t> s(k);
    for (size_t j = 0; j < k; ++j) s[j] = strides[j][i];
    gstrides.push_back(std::move(s));
  }
  BroadcastPlan p;
  p.outer_strides.assign(k, {});
  p.inner_strides.assign(k, 0);
  if (sizes.empty()) return p;  // scalar output
  p.inner = sizes[0];
  p.inner_strides = gstrides[0];
  for (size_t g = sizes.size(); g-- > 1;) {
    p.outer.push_back(sizes[g]);
    for (size_t j = 0; j < k; ++j) p.outer_strides[j].push_back(gstrides[g][j]);
  }
  return p;
}

/// Reference: out[i] = f(a[..], b[..]) walking the output index by index.
template <class TA, class TB, class TO, class F>
void binary_ref_loop(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const TA* pa = a.data_as<TA>();
  const TB* pb = b.data_as<TB>();
  TO* po = out.data_as<TO>();
  MultiIndex it(out.dims(), {broadcast_strides(a.dims(), out.dims()), broadcast_strides(b.dims(), out.dims())});
  for (int64_t i = 0; i < out.numel(); ++i, it.next()) po[i] = f(pa[it.offset(0)], pb[it.offset(1)]);
}

/// Fast: out[i] = f(a[..], b[..]) over a coalesced plan; the common inner
/// stride patterns get their own loops so the compiler can vectorise them.
template <class TA, class TB, class TO, class F>
void binary_fast_loop(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  if (out.numel() == 0) return;
  const TA* pa = a.data_as<TA>();
  const TB* pb = b.data_as<TB>();
  TO* po = out.data_as<TO>();
  const BroadcastPlan p = plan_broadcast(out.dims(), {&a.dims(), &b.dims()});
  const int64_t n = p.inner, sa = p.inner_strides[0], sb = p.inner_strides[1];
  MultiIndex it(p.outer, p.outer_strides);
  for (int64_t o = 0, count = p.outer_count(); o < count; ++o, it.next()) {
    const TA* xa = pa + it.offset(0);
    const TB* xb = pb + it.offset(1);
    TO* y = po + o * n;
    if (sa == 1 && sb == 1) {
      for (int64_t i = 0; i < n; ++i) y[i] = f(xa[i], xb[i]);
    } else if (sa == 0 && sb == 1) {
      const TA va = xa[0];
      for (int64_t i = 0; i < n; ++i) y[i] = f(va, xb[i]);
    } else if (sa == 1 && sb == 0) {
      const TB vb = xb[0];
      for (int64_t i = 0; i < n; ++i) y[i] = f(xa[i], vb);
    } else {  // not reached: after coalescing one operand has inner stride 1
      for (int64_t i = 0; i < n; ++i) y[i] = f(xa[i * sa], xb[i * sb]);
    }
  }
}

}  // namespace kiln::ops

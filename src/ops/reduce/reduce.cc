// Reduce*: reduces the input over a set of axes with sum, mean, max, min, prod,
// L1/L2 norms, log-sum, log-sum-exp or sum of squares.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "base/dispatch.h"
#include "ops/common.h"
#include "ops/reduce/reduce_internal.h"
#include "ops/reduce/reduce_util.h"

namespace kiln::ops {

void register_arg_ops(OpRegistry& r);
void register_cumulative_ops(OpRegistry& r);
void register_top_k_ops(OpRegistry& r);

namespace reduce_detail {

using namespace reduce_util;

ReduceKind kind_of(const std::string& op) {
  if (op == "ReduceSum") return ReduceKind::kSum;
  if (op == "ReduceMean") return ReduceKind::kMean;
  if (op == "ReduceMax") return ReduceKind::kMax;
  if (op == "ReduceMin") return ReduceKind::kMin;
  if (op == "ReduceProd") return ReduceKind::kProd;
  if (op == "ReduceL1") return ReduceKind::kL1;
  if (op == "ReduceL2") return ReduceKind::kL2;
  if (op == "ReduceLogSum") return ReduceKind::kLogSum;
  if (op == "ReduceLogSumExp") return ReduceKind::kLogSumExp;
  return ReduceKind::kSumSquare;
}

namespace {

// Opset 13 moved ReduceSum's `axes` from attribute to input; opset 18 did the
// same for the other reductions (and added noop_with_empty_axes to them).
int axes_input_opset(const std::string& op) { return op == "ReduceSum" ? 13 : 18; }

Status node_error(const ir::Node& node, const std::string& msg, ErrorCode code = ErrorCode::kInvalidModel) {
  return Status(code, "node " + node.describe() + ": " + msg);
}
}  // namespace

Result<AxesSource> axes_source(const ir::Node& node, bool has_axes_input, const Tensor* axes_value) {
  AxesSource s;
  bool from_input = node.opset >= axes_input_opset(node.op_type);
  if (from_input) s.noop_with_empty_axes = node.attrs.get_int("noop_with_empty_axes", 0) != 0;
  if (from_input && has_axes_input) {
    if (!axes_value) {
      s.known = false;
      return s;
    }
    if (dtype_is_float(axes_value->dtype()) || axes_value->dtype() == DataType::kBool)
      return node_error(node, std::string("axes must be an integer tensor, got ") + dtype_name(axes_value->dtype()));
    if (axes_value->rank() > 1) return node_error(node, "axes must be a 1-D tensor");
    s.axes = axes_value->to_int64_vector();
    return s;
  }
  // Before the move (and leniently after it, when no input is given) the attribute holds them.
  s.axes = node.attrs.get_ints("axes");
  return s;
}

Result<std::vector<bool>> reduced_mask(const ir::Node& node, const AxesSource& src, int64_t rank, bool* noop) {
  *noop = false;
  std::vector<bool> mask(static_cast<size_t>(rank), false);
  if (src.axes.empty()) {
    if (src.noop_with_empty_axes) {
      *noop = true;
      return mask;
    }
    std::fill(mask.begin(), mask.end(), true);
    return mask;
  }
  for (int64_t a : src.axes) {
    auto n = normalize_axis(a, rank);
    if (!n) return node_error(node, "axis " + std::to_string(a) + " is out of range for rank " + std::to_string(rank));
    if (mask[static_cast<size_t>(*n)]) return node_error(node, "axis " + std::to_string(a) + " is repeated");
    mask[static_cast<size_t>(*n)] = true;
  }
  return mask;
}

namespace {

bool allows_bool(ReduceKind k) { return k == ReduceKind::kMax || k == ReduceKind::kMin; }

Status check_dtype(const InferContext& ctx, DataType t) {
  if (t == DataType::kBool && !allows_bool(kind_of(ctx.node().op_type))) return ctx.error("bool input is not allowed");
  if (t == DataType::kString || !dtype_is_supported(t))
    return ctx.unsupported(std::string("dtype ") + dtype_name(t) + " is not supported");
  return Status();
}

Status infer_reduce(InferContext& ctx) {
  DataType dt = ctx.input_dtype(0);
  KILN_RETURN_IF_ERROR(check_dtype(ctx, dt));
  const Shape* in = ctx.input_shape(0);
  bool keepdims = ctx.attrs().get_int("keepdims", 1) != 0;
  // An axes input known to be empty needs no value.
  static const Tensor kNoAxes = Tensor::empty(DataType::kInt64, {0});
  const Tensor* axes_value = ctx.value(1);
  const Shape* axes_shape = ctx.input_shape(1);
  if (ctx.has_input(1) && !axes_value && axes_shape && shape_volume(*axes_shape) == 0) axes_value = &kNoAxes;
  KILN_ASSIGN_OR_RETURN(AxesSource src, axes_source(ctx.node(), ctx.has_input(1), axes_value));
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  int64_t rank = static_cast<int64_t>(in->size());
  if (!src.known) {
    if (keepdims) {
      // Every dim may or may not be reduced; a dim of size 1 stays 1 either way.
      Shape out;
      for (const Dim& d : *in) out.push_back(d.known() && d.value == 1 ? Dim(1) : Dim::unknown());
      ctx.set_output(0, dt, out);
      return Status();
    }
    if (axes_shape && axes_shape->size() == 1 && (*axes_shape)[0].known() && (*axes_shape)[0].value > 0 &&
        (*axes_shape)[0].value <= rank) {
      ctx.set_output(0, dt, Shape(static_cast<size_t>(rank - (*axes_shape)[0].value), Dim::unknown()));
      return Status();
    }
    ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  bool noop = false;
  KILN_ASSIGN_OR_RETURN(std::vector<bool> mask, reduced_mask(ctx.node(), src, rank, &noop));
  if (noop) {
    ctx.set_output(0, dt, *in);
    return Status();
  }
  Shape out;
  for (int64_t i = 0; i < rank; ++i) {
    if (!mask[static_cast<size_t>(i)])
      out.push_back((*in)[static_cast<size_t>(i)]);
    else if (keepdims)
      out.push_back(Dim(1));
  }
  ctx.set_output(0, dt, out);
  return Status();
}

/// Value of an empty reduction (and the starting value of max/min).
template <typename T>
T empty_value(ReduceKind k) {
  constexpr bool kF = kFloatLike<T>;
  constexpr double kInf = std::numeric_limits<double>::infinity();
  switch (k) {
    case ReduceKind::kMax:
      if constexpr (std::is_same_v<T, bool>)
        return false;
      else if constexpr (kF)
        return narrow_from_double<T>(-kInf);
      else
        return std::numeric_limits<T>::lowest();
    case ReduceKind::kMin:
      if constexpr (std::is_same_v<T, bool>)
        return true;
      else if constexpr (kF)
        return narrow_from_double<T>(kInf);
      else
        return std::numeric_limits<T>::max();
    case ReduceKind::kProd:
      return narrow_from_double<T>(1.0);
    case ReduceKind::kMean:
      return narrow_from_double<T>(std::numeric_limits<double>::quiet_NaN());
    case ReduceKind::kLogSum:
    case ReduceKind::kLogSumExp:
      return narrow_from_double<T>(-kInf);
    default:
      return narrow_from_double<T>(0.0);
  }
}

/// Reduces x[base + roff[j]] over j for one output element.
template <typename T>
T reduce_one(ReduceKind k, const T* x, int64_t base, const std::vector<int64_t>& roff) {
  using A = Acc<T>;
  size_t n = roff.size();
  if (n == 0) return empty_value<T>(k);
  switch (k) {
    case ReduceKind::kMax:
    case ReduceKind::kMin: {
      A best = widen(x[base + roff[0]]);
      for (size_t j = 1; j < n && !is_nan(best); ++j) {
        A v = widen(x[base + roff[j]]);
        if (is_nan(v) || (k == ReduceKind::kMax ? v > best : v < best)) best = v;
      }
      return narrow<T>(best);
    }
    case ReduceKind::kProd: {
      A p = A(1);
      for (size_t j = 0; j < n; ++j) p *= widen(x[base + roff[j]]);
      return narrow<T>(p);
    }
    case ReduceKind::kLogSumExp: {
      double m = -std::numeric_limits<double>::infinity();
      for (size_t j = 0; j < n; ++j) m = std::max(m, to_double(x[base + roff[j]]));
      if (std::isinf(m)) return narrow_from_double<T>(m);
      double s = 0;
      for (size_t j = 0; j < n; ++j) s += std::exp(to_double(x[base + roff[j]]) - m);
      return narrow_from_double<T>(m + std::log(s));
    }
    default:
      break;
  }
  A s = A(0);
  for (size_t j = 0; j < n; ++j) {
    A v = widen(x[base + roff[j]]);
    switch (k) {
      case ReduceKind::kL1:
        if constexpr (std::is_signed_v<A>) v = v < 0 ? -v : v;
        break;
      case ReduceKind::kL2:
      case ReduceKind::kSumSquare:
        v = v * v;
        break;
      default:
        break;
    }
    s += v;
  }
  switch (k) {
    case ReduceKind::kMean:
      if constexpr (kFloatLike<T>)
        return narrow<T>(s / static_cast<double>(n));
      else
        return narrow_from_double<T>(static_cast<double>(s) / static_cast<double>(n));
    case ReduceKind::kL2:
      return narrow_from_double<T>(std::sqrt(static_cast<double>(s)));
    case ReduceKind::kLogSum:
      return narrow_from_double<T>(std::log(static_cast<double>(s)));
    default:
      return narrow<T>(s);
  }
}

}  // namespace

Status ref_reduce(KernelContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(AxesSource src,
                        axes_source(node, ctx.has_input(1), ctx.has_input(1) ? &ctx.input(1) : nullptr));
  bool noop = false;
  KILN_ASSIGN_OR_RETURN(std::vector<bool> mask, reduced_mask(node, src, x.rank(), &noop));
  if (noop) {
    if (x.nbytes()) std::memcpy(y.data(), x.data(), x.nbytes());
    return Status();
  }
  // Offsets of the reduced sub-block, and the base offset of each output element.
  const Dims& d = x.dims();
  auto strides = strides_of(d);
  Dims rdims, kdims;
  std::vector<int64_t> rstr, kstr;
  for (size_t i = 0; i < d.size(); ++i) {
    if (mask[i])
      rdims.push_back(d[i]), rstr.push_back(strides[i]);
    else
      kdims.push_back(d[i]), kstr.push_back(strides[i]);
  }
  int64_t rcount = dims_volume(rdims), kcount = dims_volume(kdims);
  if (kcount != y.numel()) return ctx.error("output size does not match the reduction", ErrorCode::kInternal);
  std::vector<int64_t> roff;
  roff.reserve(static_cast<size_t>(rcount));
  for (MultiIndex it(rdims, {rstr}); static_cast<int64_t>(roff.size()) < rcount; it.next())
    roff.push_back(it.offset(0));
  ReduceKind kind = kind_of(node.op_type);
  KILN_DISPATCH_ALL(x.dtype(), T, {
    const T* xp = x.data_as<T>();
    T* yp = y.data_as<T>();
    MultiIndex it(kdims, {kstr});
    for (int64_t o = 0; o < kcount; ++o, it.next()) yp[o] = reduce_one<T>(kind, xp, it.offset(0), roff);
  });
  return Status();
}

Status fast_reduce(KernelContext& ctx);

}  // namespace reduce_detail

void register_reduce_ops(OpRegistry& r) {
  using namespace reduce_detail;
  for (const char* name : {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                           "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}) {
    r.add({.name = name,
           .infer = infer_reduce,
           .ref = ref_reduce,
           .fast = {{"cpu.block", fast_reduce, nullptr}},
           .value_inputs = {1}});
  }
  register_arg_ops(r);
  register_cumulative_ops(r);
  register_top_k_ops(r);
}

}  // namespace kiln::ops

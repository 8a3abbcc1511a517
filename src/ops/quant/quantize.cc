// QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear: affine conversion
// between float and 16/8/4/2-bit integers, float8 or float4e2m1, per tensor, per
// axis or per block.
#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "backends/cpu/thread_pool.h"
#include "base/float8.h"
#include "ops/common.h"
#include "ops/quant/quant_util.h"

namespace kiln::ops {

void register_qlinear_matmul_ops(OpRegistry& r);
void register_qlinear_conv_ops(OpRegistry& r);

namespace {

using namespace quant;

Status node_error(const ir::Node& node, const std::string& msg, ErrorCode code = ErrorCode::kInvalidModel) {
  return Status(code, "node " + node.describe() + ": " + msg);
}

/// How scale/zero-point elements map onto x, viewing x as [outer, n, inner] around `axis`.
struct ParamLayout {
  enum Kind { kTensor, kAxis, kBlock } kind = kTensor;
  int64_t outer = 1, n = 1, inner = 1;
  int64_t block = 0, blocks = 1;

  int64_t index(int64_t o, int64_t j, int64_t i) const {
    switch (kind) {
      case kTensor:
        return 0;
      case kAxis:
        return j;
      case kBlock:
        return (o * blocks + j / block) * inner + i;
    }
    return 0;
  }
};

/// Validates scale (and zero-point) dims against x; opset 10 allowed only per-tensor,
/// opset 13 added per-axis, opset 21 added blocked (block_size).
Result<ParamLayout> param_layout(const ir::Node& node, const Dims& x, const Dims& scale, const Dims* zp) {
  ParamLayout L;
  if (zp && *zp != scale && !(dims_volume(*zp) == 1 && dims_volume(scale) == 1))
    return node_error(node,
                      "zero point dims " + dims_to_string(*zp) + " differ from scale dims " + dims_to_string(scale));
  int64_t block = node.opset >= 21 ? node.attrs.get_int("block_size", 0) : 0;
  if (block < 0) return node_error(node, "block_size must be >= 0");
  int64_t count = dims_volume(scale);
  if (count == 1 && block == 0) {
    L.n = dims_volume(x);
    return L;
  }
  int64_t rank = static_cast<int64_t>(x.size());
  int64_t axis_attr = node.opset >= 13 ? node.attrs.get_int("axis", 1) : 1;
  if (node.opset < 13) return node_error(node, "scale must be a scalar before opset 13");
  auto axis = normalize_axis(axis_attr, rank);
  if (!axis)
    return node_error(node, "axis " + std::to_string(axis_attr) + " is out of range for rank " + std::to_string(rank));
  for (int64_t d = 0; d < rank; ++d) {
    if (d < *axis)
      L.outer *= x[d];
    else if (d > *axis)
      L.inner *= x[d];
  }
  L.n = x[*axis];
  if (block == 0) {
    if (scale.size() != 1 || scale[0] != L.n)
      return node_error(node,
                        "per-axis scale must be 1-D of size " + std::to_string(L.n) + ", got " + dims_to_string(scale));
    L.kind = ParamLayout::kAxis;
    return L;
  }
  if (static_cast<int64_t>(scale.size()) != rank)
    return node_error(node, "blocked scale must have the input's rank " + std::to_string(rank));
  int64_t blocks = (L.n + block - 1) / block;
  for (int64_t d = 0; d < rank; ++d) {
    int64_t want = d == *axis ? blocks : x[d];
    if (scale[d] != want)
      return node_error(node, "blocked scale dims " + dims_to_string(scale) + " do not match input dims " +
                                  dims_to_string(x) + " with block_size " + std::to_string(block));
  }
  L.kind = ParamLayout::kBlock;
  L.block = block;
  L.blocks = blocks;
  return L;
}

Status check_scale_dtype(const ir::Node& node, DataType t) {
  if (t != DataType::kFloat32 && t != DataType::kFloat16 && t != DataType::kBFloat16)
    return node_error(node, std::string("scale must be float32, float16 or bfloat16, got ") + dtype_name(t));
  return Status();
}

std::vector<double> as_doubles(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.get_as_double(i);
  return v;
}

// ---------------------------------------------------------------- QuantizeLinear

Result<DataType> quantize_out_dtype(const ir::Node& node, bool has_zp, DataType zp) {
  int64_t od = node.opset >= 21 ? node.attrs.get_int("output_dtype", 0) : 0;
  DataType t = DataType::kUInt8;
  if (has_zp) {
    t = zp;
    if (od != 0 && od != static_cast<int64_t>(zp))
      return node_error(node,
                        "output_dtype " + std::to_string(od) + " differs from the zero point's type " + dtype_name(zp));
  } else if (od != 0) {
    t = static_cast<DataType>(od);
  }
  if (!is_quant_int(t) && !is_quant_float(t)) {
    if (t == static_cast<DataType>(27) || t == static_cast<DataType>(28))
      return node_error(node, "quantizing to float6 is not supported", ErrorCode::kUnsupported);
    return node_error(node, std::string("cannot quantize to ") + dtype_name(t));
  }
  return t;
}

Status infer_quantize(InferContext& ctx) {
  DataType xt = ctx.input_dtype(0);
  if (!dtype_is_float(xt) && xt != DataType::kInt32)
    return ctx.error(std::string("input must be float or int32, got ") + dtype_name(xt));
  if (dtype_is_narrow(xt)) return ctx.error(std::string("input must be float or int32, got ") + dtype_name(xt));
  KILN_RETURN_IF_ERROR(check_scale_dtype(ctx.node(), ctx.input_dtype(1)));
  KILN_ASSIGN_OR_RETURN(DataType out, quantize_out_dtype(ctx.node(), ctx.has_input(2), ctx.input_dtype(2)));
  const Shape* xs = ctx.input_shape(0);
  const Shape* ss = ctx.input_shape(1);
  const Shape* zs = ctx.has_input(2) ? ctx.input_shape(2) : nullptr;
  if (xs && ss && shape_is_concrete(*xs) && shape_is_concrete(*ss) && (!zs || shape_is_concrete(*zs))) {
    Dims zd = zs ? shape_to_dims(*zs) : Dims{};
    auto l = param_layout(ctx.node(), shape_to_dims(*xs), shape_to_dims(*ss), zs ? &zd : nullptr);
    if (!l.ok()) return l.status();
  }
  ctx.set_output(0, out, ctx.input(0).shape);
  return Status();
}

Status ref_quantize(KernelContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const Tensor& scale = ctx.input(1);
  const Tensor* zp = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  KILN_ASSIGN_OR_RETURN(DataType out, quantize_out_dtype(node, zp != nullptr, zp ? zp->dtype() : DataType::kUInt8));
  KILN_ASSIGN_OR_RETURN(ParamLayout L, param_layout(node, x.dims(), scale.dims(), zp ? &zp->dims() : nullptr));
  // The division happens in numpy's promoted type of x and scale, or in `precision` (opset 25).
  DataType prec = promote(x.dtype(), scale.dtype());
  int64_t p_attr = node.attrs.get_int("precision", 0);
  if (p_attr != 0) {
    prec = static_cast<DataType>(p_attr);
    if (!dtype_is_float(prec) || dtype_is_narrow(prec))
      return ctx.error("precision must name a float type, got " + std::to_string(p_attr));
  }
  std::vector<double> s = as_doubles(scale);
  std::vector<double> z = zp ? as_doubles(*zp) : std::vector<double>(s.size(), 0.0);
  for (double& v : s) v = round_to(v, prec);
  // Float targets: y = cast(x / scale + zero_point); `saturate` (opset 19) picks
  // what overflow becomes, float4e2m1 always saturates.
  const MiniFloatFormat* fmt = minifloat_format(out);
  const bool saturate = out == DataType::kFloat4E2M1 || node.opset < 19 || node.attrs.get_int("saturate", 1) != 0;
  Tensor& y = ctx.output(0);
  uint8_t* y8 = static_cast<uint8_t*>(y.data());
  for (int64_t o = 0, e = 0; o < L.outer; ++o)
    for (int64_t j = 0; j < L.n; ++j)
      for (int64_t i = 0; i < L.inner; ++i, ++e) {
        int64_t p = L.index(o, j, i);
        double q = round_to(round_to(x.get_as_double(e), prec) / s[p], prec);
        if (fmt)
          y8[e] = double_to_minifloat(round_to(q + z[p], prec), *fmt, saturate);
        else
          y.set_from_double(e, saturate_round(std::nearbyint(q) + z[p], out));
      }
  return Status();
}

// ---------------------------------------------------------------- DequantizeLinear

bool is_dequant_input(DataType t) { return is_quant_int(t) || is_quant_float(t) || t == DataType::kInt32; }

Result<DataType> dequantize_out_dtype(const ir::Node& node, DataType scale) {
  int64_t od = node.opset >= 23 ? node.attrs.get_int("output_dtype", 0) : 0;
  if (od == 0) return scale;
  DataType t = static_cast<DataType>(od);
  if (t != DataType::kFloat32 && t != DataType::kFloat16 && t != DataType::kBFloat16)
    return node_error(node, "output_dtype must be a float type, got " + std::to_string(od));
  return t;
}

Status infer_dequantize(InferContext& ctx) {
  DataType xt = ctx.input_dtype(0);
  if (!is_dequant_input(xt)) return ctx.error(std::string("cannot dequantize ") + dtype_name(xt));
  KILN_RETURN_IF_ERROR(check_scale_dtype(ctx.node(), ctx.input_dtype(1)));
  if (ctx.has_input(2) && ctx.input_dtype(2) != xt)
    return ctx.error(std::string("zero point type ") + dtype_name(ctx.input_dtype(2)) + " differs from input type " +
                     dtype_name(xt));
  KILN_ASSIGN_OR_RETURN(DataType out, dequantize_out_dtype(ctx.node(), ctx.input_dtype(1)));
  const Shape* xs = ctx.input_shape(0);
  const Shape* ss = ctx.input_shape(1);
  const Shape* zs = ctx.has_input(2) ? ctx.input_shape(2) : nullptr;
  if (xs && ss && shape_is_concrete(*xs) && shape_is_concrete(*ss) && (!zs || shape_is_concrete(*zs))) {
    Dims zd = zs ? shape_to_dims(*zs) : Dims{};
    auto l = param_layout(ctx.node(), shape_to_dims(*xs), shape_to_dims(*ss), zs ? &zd : nullptr);
    if (!l.ok()) return l.status();
  }
  ctx.set_output(0, out, ctx.input(0).shape);
  return Status();
}

Status ref_dequantize(KernelContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const Tensor& scale = ctx.input(1);
  const Tensor* zp = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  KILN_ASSIGN_OR_RETURN(ParamLayout L, param_layout(node, x.dims(), scale.dims(), zp ? &zp->dims() : nullptr));
  std::vector<double> s = as_doubles(scale);
  std::vector<double> z = zp ? as_doubles(*zp) : std::vector<double>(s.size(), 0.0);
  bool wide = x.dtype() == DataType::kInt32;
  Tensor& y = ctx.output(0);
  for (int64_t o = 0, e = 0; o < L.outer; ++o)
    for (int64_t j = 0; j < L.n; ++j)
      for (int64_t i = 0; i < L.inner; ++i, ++e) {
        int64_t p = L.index(o, j, i);
        // The reference subtracts in float32 (float64 once int32 is involved) and scales there.
        double xv = static_cast<float>(x.get_as_double(e));
        double v =
            wide ? (xv - z[p]) * s[p] : static_cast<float>(static_cast<float>(xv - z[p]) * static_cast<float>(s[p]));
        y.set_from_double(e, static_cast<float>(v));
      }
  return Status();
}

// ---------------------------------------------------------------- fast float32 <-> 8-bit paths

bool is_q8(DataType t) { return t == DataType::kInt8 || t == DataType::kUInt8; }

/// Runs fn(row_begin, row_end) over rows of L.inner elements. A per-tensor layout is
/// first re-cut into 4096-element rows so that it spreads over threads too.
void for_rows(const KernelContext& ctx, ParamLayout& L, const cpu::RangeFn& fn) {
  if (L.kind == ParamLayout::kTensor) {
    int64_t total = L.outer * L.n * L.inner;
    L.inner = std::min<int64_t>(total, 4096);
    L.outer = 1;
    L.n = L.inner ? (total + L.inner - 1) / L.inner : 0;
  }
  int64_t rows = L.outer * L.n;
  int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(L.inner, 1));
  cpu::parallel_for(rows, fn, ctx.num_threads(), grain);
}

/// Rounds half to even for |v| < 2^22 without a libm call (the default rounding mode does it).
inline float round_even(float v) {
  const float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (v + kMagic) - kMagic;
}

template <typename Q>
Status quantize_f32(KernelContext& ctx, ParamLayout L, const std::vector<double>& s, const std::vector<double>& z) {
  const int64_t total = ctx.input(0).numel();
  const float* xp = ctx.input(0).data_as<float>();
  Q* yp = ctx.output(0).data_as<Q>();
  const float lo = std::is_signed_v<Q> ? -128.f : 0.f, hi = std::is_signed_v<Q> ? 127.f : 255.f;
  for_rows(ctx, L, [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      int64_t o = row / L.n, j = row % L.n;
      bool blocked = L.kind == ParamLayout::kBlock;
      float row_sc = static_cast<float>(s[L.index(o, j, 0)]), row_zp = static_cast<float>(z[L.index(o, j, 0)]);
      int64_t len = std::min(L.inner, total - row * L.inner);
      for (int64_t i = 0; i < len; ++i) {
        int64_t p = blocked ? L.index(o, j, i) : 0;
        float sc = blocked ? static_cast<float>(s[p]) : row_sc, zp = blocked ? static_cast<float>(z[p]) : row_zp;
        float q = xp[row * L.inner + i] / sc;
        float v;
        if (q != q)
          v = 0.f;  // NaN, as the reference kernel
        else
          v = std::clamp(round_even(std::clamp(q, -4.0e6f, 4.0e6f)) + zp, lo, hi);
        yp[row * L.inner + i] = static_cast<Q>(v);
      }
    }
  });
  return Status();
}

/// float32 input and scale, 8-bit output, no `precision` attribute.
Status fast_quantize(KernelContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const Tensor& scale = ctx.input(1);
  const Tensor* zp = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  Tensor& y = ctx.output(0);
  if (x.dtype() != DataType::kFloat32 || scale.dtype() != DataType::kFloat32 || !is_q8(y.dtype()) ||
      node.attrs.get_int("precision", 0) != 0)
    return ref_quantize(ctx);
  KILN_ASSIGN_OR_RETURN(ParamLayout L, param_layout(node, x.dims(), scale.dims(), zp ? &zp->dims() : nullptr));
  std::vector<double> s = as_doubles(scale);
  std::vector<double> z = zp ? as_doubles(*zp) : std::vector<double>(s.size(), 0.0);
  if (y.dtype() == DataType::kUInt8) return quantize_f32<uint8_t>(ctx, L, s, z);
  return quantize_f32<int8_t>(ctx, L, s, z);
}

template <typename Q>
Status dequantize_to_f32(KernelContext& ctx, ParamLayout L, const std::vector<double>& s,
                         const std::vector<double>& z) {
  const int64_t total = ctx.input(0).numel();
  const Q* xp = ctx.input(0).data_as<Q>();
  float* yp = ctx.output(0).data_as<float>();
  for_rows(ctx, L, [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      int64_t o = row / L.n, j = row % L.n;
      if (L.kind == ParamLayout::kBlock) {
        for (int64_t i = 0; i < L.inner; ++i) {
          int64_t p = L.index(o, j, i);
          yp[row * L.inner + i] =
              (static_cast<float>(xp[row * L.inner + i]) - static_cast<float>(z[p])) * static_cast<float>(s[p]);
        }
        continue;
      }
      int64_t p = L.index(o, j, 0);
      const float sc = static_cast<float>(s[p]), zp = static_cast<float>(z[p]);
      int64_t len = std::min(L.inner, total - row * L.inner);
      for (int64_t i = 0; i < len; ++i) yp[row * L.inner + i] = (static_cast<float>(xp[row * L.inner + i]) - zp) * sc;
    }
  });
  return Status();
}

/// 8-bit input, float32 scale and output.
Status fast_dequantize(KernelContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  const Tensor& scale = ctx.input(1);
  const Tensor* zp = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  if (!is_q8(x.dtype()) || scale.dtype() != DataType::kFloat32 || ctx.output(0).dtype() != DataType::kFloat32)
    return ref_dequantize(ctx);
  KILN_ASSIGN_OR_RETURN(ParamLayout L, param_layout(node, x.dims(), scale.dims(), zp ? &zp->dims() : nullptr));
  std::vector<double> s = as_doubles(scale);
  std::vector<double> z = zp ? as_doubles(*zp) : std::vector<double>(s.size(), 0.0);
  if (x.dtype() == DataType::kUInt8) return dequantize_to_f32<uint8_t>(ctx, L, s, z);
  return dequantize_to_f32<int8_t>(ctx, L, s, z);
}

// ---------------------------------------------------------------- DynamicQuantizeLinear

Status infer_dynamic_quantize(InferContext& ctx) {
  if (ctx.input_dtype(0) != DataType::kFloat32)
    return ctx.error(std::string("input must be float32, got ") + dtype_name(ctx.input_dtype(0)));
  ctx.set_output(0, DataType::kUInt8, ctx.input(0).shape);
  ctx.set_output(1, DataType::kFloat32, Shape{});
  ctx.set_output(2, DataType::kUInt8, Shape{});
  return Status();
}

Status ref_dynamic_quantize(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const float* xp = x.data_as<float>();
  // The range always includes 0 so that 0 is exactly representable. All math is float32.
  float lo = 0.f, hi = 0.f;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (std::isnan(xp[i])) continue;
    lo = std::min(lo, xp[i]);
    hi = std::max(hi, xp[i]);
  }
  float scale = (hi == lo ? 1.0f : hi - lo) / 255.0f;
  float zp0 = 0.0f - lo / scale;
  double zp = std::nearbyint(std::clamp(zp0, 0.0f, 255.0f));
  if (std::isnan(zp)) zp = 0;
  Tensor& y = ctx.output(0);
  uint8_t* yp = y.data_as<uint8_t>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    float q = xp[i] / scale;
    yp[i] = static_cast<uint8_t>(saturate_round(std::nearbyint(q) + zp, DataType::kUInt8));
  }
  if (ctx.has_output(1)) ctx.output(1).data_as<float>()[0] = scale;
  if (ctx.has_output(2)) ctx.output(2).data_as<uint8_t>()[0] = static_cast<uint8_t>(zp);
  return Status();
}

}  // namespace

void register_quant_ops(OpRegistry& r) {
  r.add({.name = "QuantizeLinear",
         .infer = infer_quantize,
         .ref = ref_quantize,
         .fast = {{"cpu.quant8", fast_quantize, nullptr}},
         .min_opset = 10});
  r.add({.name = "DequantizeLinear",
         .infer = infer_dequantize,
         .ref = ref_dequantize,
         .fast = {{"cpu.quant8", fast_dequantize, nullptr}},
         .min_opset = 10});
  r.add(
      {.name = "DynamicQuantizeLinear", .infer = infer_dynamic_quantize, .ref = ref_dynamic_quantize, .min_opset = 11});
  register_qlinear_matmul_ops(r);
  register_qlinear_conv_ops(r);
}

}  // namespace kiln::ops

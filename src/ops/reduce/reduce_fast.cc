// Fast float32 Reduce*: when the reduced axes form one contiguous block (size-1
// dims ignored), reduces [outer, red, inner] with sequential reads over threads.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backends/cpu/thread_pool.h"
#include "ops/common.h"
#include "ops/reduce/reduce_internal.h"

namespace kiln::ops::reduce_detail {
namespace {

/// Collapses x's dims into outer x red x inner; false if the reduced dims are not one block.
bool as_block(const Dims& d, const std::vector<bool>& mask, int64_t* outer, int64_t* red, int64_t* inner) {
  *outer = *red = *inner = 1;
  int stage = 0;  // 0: before the block, 1: inside, 2: after
  for (size_t i = 0; i < d.size(); ++i) {
    if (d[i] == 1) continue;
    if (mask[i]) {
      if (stage == 2) return false;
      stage = 1;
      *red *= d[i];
    } else {
      if (stage == 1) stage = 2;
      (stage == 0 ? *outer : *inner) *= d[i];
    }
  }
  return true;
}

double finish(ReduceKind k, double acc, double n) {
  switch (k) {
    case ReduceKind::kMean:
      return acc / n;
    case ReduceKind::kL2:
      return std::sqrt(acc);
    case ReduceKind::kLogSum:
      return std::log(acc);
    default:
      return acc;
  }
}

double start_value(ReduceKind k) { return k == ReduceKind::kProd ? 1.0 : 0.0; }

inline double step(ReduceKind k, double acc, double v) {
  switch (k) {
    case ReduceKind::kMax:
      return (v > acc || v != v) && acc == acc ? v : acc;
    case ReduceKind::kMin:
      return (v < acc || v != v) && acc == acc ? v : acc;
    case ReduceKind::kProd:
      return acc * v;
    case ReduceKind::kL1:
      return acc + std::fabs(v);
    case ReduceKind::kL2:
    case ReduceKind::kSumSquare:
      return acc + v * v;
    default:
      return acc + v;
  }
}

/// Reduces `red` rows of `len` floats spaced `stride` apart into out[0..len).
void reduce_rows(ReduceKind k, const float* x, int64_t red, int64_t stride, int64_t len, float* out,
                 std::vector<double>& acc, std::vector<double>& mx) {
  acc.assign(static_cast<size_t>(len), start_value(k));
  bool extreme = k == ReduceKind::kMax || k == ReduceKind::kMin;
  if (extreme)
    for (int64_t i = 0; i < len; ++i) acc[i] = x[i];
  if (k == ReduceKind::kLogSumExp) {
    // Subtract the running maximum so exp() cannot overflow.
    mx.assign(static_cast<size_t>(len), -std::numeric_limits<double>::infinity());
    for (int64_t r = 0; r < red; ++r)
      for (int64_t i = 0; i < len; ++i) mx[i] = std::max(mx[i], static_cast<double>(x[r * stride + i]));
    for (int64_t r = 0; r < red; ++r)
      for (int64_t i = 0; i < len; ++i)
        if (!std::isinf(mx[i])) acc[i] += std::exp(x[r * stride + i] - mx[i]);
    for (int64_t i = 0; i < len; ++i) out[i] = static_cast<float>(std::isinf(mx[i]) ? mx[i] : mx[i] + std::log(acc[i]));
    return;
  }
  for (int64_t r = extreme ? 1 : 0; r < red; ++r) {
    const float* row = x + r * stride;
    switch (k) {
      case ReduceKind::kSum:
      case ReduceKind::kMean:
      case ReduceKind::kLogSum:
        for (int64_t i = 0; i < len; ++i) acc[i] += row[i];
        break;
      case ReduceKind::kSumSquare:
      case ReduceKind::kL2:
        for (int64_t i = 0; i < len; ++i) acc[i] += static_cast<double>(row[i]) * row[i];
        break;
      default:
        for (int64_t i = 0; i < len; ++i) acc[i] = step(k, acc[i], row[i]);
    }
  }
  for (int64_t i = 0; i < len; ++i) out[i] = static_cast<float>(finish(k, acc[i], static_cast<double>(red)));
}

/// Reduces one contiguous run of n floats.
float reduce_run(ReduceKind k, const float* x, int64_t n) {
  double s = start_value(k);
  // Four partial sums break the add-latency chain.
  auto sum4 = [&](auto f) {
    double p[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
      for (int q = 0; q < 4; ++q) p[q] += f(static_cast<double>(x[i + q]));
    for (; i < n; ++i) p[0] += f(static_cast<double>(x[i]));
    return (p[0] + p[1]) + (p[2] + p[3]);
  };
  switch (k) {
    case ReduceKind::kSum:
    case ReduceKind::kMean:
    case ReduceKind::kLogSum:
      s = sum4([](double v) { return v; });
      break;
    case ReduceKind::kSumSquare:
    case ReduceKind::kL2:
      s = sum4([](double v) { return v * v; });
      break;
    case ReduceKind::kLogSumExp: {
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(x[i]));
      if (std::isinf(m)) return static_cast<float>(m);
      for (int64_t i = 0; i < n; ++i) s += std::exp(x[i] - m);
      return static_cast<float>(m + std::log(s));
    }
    case ReduceKind::kMax:
    case ReduceKind::kMin:
      s = x[0];
      for (int64_t i = 1; i < n; ++i) s = step(k, s, x[i]);
      break;
    default:
      for (int64_t i = 0; i < n; ++i) s = step(k, s, x[i]);
  }
  return static_cast<float>(finish(k, s, static_cast<double>(n)));
}

}  // namespace

Status fast_reduce(KernelContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  if (x.dtype() != DataType::kFloat32) return ref_reduce(ctx);
  KILN_ASSIGN_OR_RETURN(AxesSource src,
                        axes_source(node, ctx.has_input(1), ctx.has_input(1) ? &ctx.input(1) : nullptr));
  bool noop = false;
  KILN_ASSIGN_OR_RETURN(std::vector<bool> mask, reduced_mask(node, src, x.rank(), &noop));
  int64_t outer, red, inner;
  if (noop || !as_block(x.dims(), mask, &outer, &red, &inner) || x.numel() == 0) return ref_reduce(ctx);
  ReduceKind k = kind_of(node.op_type);
  const float* xp = x.data_as<float>();
  float* yp = ctx.output(0).data_as<float>();
  if (inner == 1) {
    cpu::parallel_for(
        outer,
        [&](int64_t o0, int64_t o1) {
          for (int64_t o = o0; o < o1; ++o) yp[o] = reduce_run(k, xp + o * red, red);
        },
        ctx.num_threads(), std::max<int64_t>(1, 32768 / red));
    return Status();
  }
  // Split each outer slice's inner extent into chunks so small `outer` still parallelizes.
  const int64_t chunk = 1024;
  int64_t chunks = (inner + chunk - 1) / chunk;
  cpu::parallel_for(
      outer * chunks,
      [&](int64_t t0, int64_t t1) {
        std::vector<double> acc, mx;
        for (int64_t t = t0; t < t1; ++t) {
          int64_t o = t / chunks, c0 = (t % chunks) * chunk, len = std::min(chunk, inner - c0);
          reduce_rows(k, xp + o * red * inner + c0, red, inner, len, yp + o * inner + c0, acc, mx);
        }
      },
      ctx.num_threads(), std::max<int64_t>(1, 32768 / std::max<int64_t>(red * chunk, 1)));
  return Status();
}

}  // namespace kiln::ops::reduce_detail

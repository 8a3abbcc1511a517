// Unique: the distinct elements (or slices along an axis), sorted or in order of
// first occurrence, with first-occurrence indices, inverse indices and counts.
#include <algorithm>
#include <numeric>
#include <type_traits>

#include "base/dispatch.h"
#include "ops/gather/gather_family.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

struct UniqueGroups {
  std::vector<int64_t> first;    ///< per output entry: index of its first occurrence
  std::vector<int64_t> inverse;  ///< per input slice: its output entry
  std::vector<int64_t> counts;   ///< per output entry: occurrences
};

// Layout of the slices compared: slice m is elements (o, m, i) for o < outer, i < inner.
struct SliceLayout {
  int64_t outer = 1, count = 0, inner = 1;
};

Result<std::optional<size_t>> unique_axis(const ir::Node& n, int64_t rank) {
  if (!n.attrs.has("axis")) return std::optional<size_t>();
  int64_t axis = n.attrs.get_int("axis", 0);
  auto a = normalize_axis(axis, rank);
  if (!a) return node_error(n, "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return std::optional<size_t>(static_cast<size_t>(*a));
}

SliceLayout slice_layout(const Dims& d, std::optional<size_t> axis) {
  if (!axis) return {1, dims_product(d, 0, d.size()), 1};
  return {dims_product(d, 0, *axis), d[*axis], dims_product(d, *axis + 1, d.size())};
}

// Orders values with NaN after everything and equal to itself (numpy's unique).
template <typename T>
int compare_values(T a, T b) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
    return compare_values<float>(static_cast<float>(a), static_cast<float>(b));
  } else if constexpr (std::is_floating_point_v<T>) {
    bool na = std::isnan(a), nb = std::isnan(b);
    if (na || nb) return na == nb ? 0 : (na ? 1 : -1);
    return a < b ? -1 : (b < a ? 1 : 0);
  } else {
    return a < b ? -1 : (b < a ? 1 : 0);
  }
}

template <typename T>
UniqueGroups group_slices(const T* x, const SliceLayout& l, bool sorted) {
  auto cmp = [&](int64_t p, int64_t q) {
    for (int64_t o = 0; o < l.outer; ++o)
      for (int64_t i = 0; i < l.inner; ++i) {
        int c = compare_values<T>(x[(o * l.count + p) * l.inner + i], x[(o * l.count + q) * l.inner + i]);
        if (c) return c;
      }
    return 0;
  };
  std::vector<int64_t> order(static_cast<size_t>(l.count));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t p, int64_t q) { return cmp(p, q) < 0; });
  UniqueGroups g;
  g.inverse.resize(order.size());
  for (size_t s = 0; s < order.size(); ++s) {
    if (s == 0 || cmp(order[s - 1], order[s]) != 0) {
      g.first.push_back(order[s]);  // the stable sort puts the first occurrence first
      g.counts.push_back(0);
    }
    g.inverse[static_cast<size_t>(order[s])] = static_cast<int64_t>(g.first.size()) - 1;
    ++g.counts.back();
  }
  if (!sorted) {
    std::vector<int64_t> by_first(g.first.size());
    std::iota(by_first.begin(), by_first.end(), 0);
    std::sort(by_first.begin(), by_first.end(),
              [&](int64_t a, int64_t b) { return g.first[static_cast<size_t>(a)] < g.first[static_cast<size_t>(b)]; });
    std::vector<int64_t> rank(by_first.size());
    UniqueGroups r;
    for (size_t k = 0; k < by_first.size(); ++k) {
      rank[static_cast<size_t>(by_first[k])] = static_cast<int64_t>(k);
      r.first.push_back(g.first[static_cast<size_t>(by_first[k])]);
      r.counts.push_back(g.counts[static_cast<size_t>(by_first[k])]);
    }
    for (int64_t v : g.inverse) r.inverse.push_back(rank[static_cast<size_t>(v)]);
    return r;
  }
  return g;
}

Result<UniqueGroups> unique_groups(const Tensor& x, const SliceLayout& l, bool sorted) {
  UniqueGroups g;
  KILN_DISPATCH_ALL(x.dtype(), T, g = group_slices<T>(x.data_as<T>(), l, sorted));
  return g;
}

Status infer_unique(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  DataType dt = ctx.input_dtype(0);
  KILN_RETURN_IF_ERROR(check_dtype_supported(ctx.node(), dt, "input"));
  const Shape* in = ctx.input_shape(0);
  std::optional<size_t> axis;
  if (in) {
    KILN_ASSIGN_OR_RETURN(axis, unique_axis(ctx.node(), static_cast<int64_t>(in->size())));
  }
  Dim count = Dim::unknown(), slices = Dim::unknown();
  if (in) slices = axis ? (*in)[*axis] : shape_product(*in, 0, in->size());
  if (const Tensor* v = ctx.value(0)) {
    bool sorted = ctx.attrs().get_int("sorted", 1) != 0;
    KILN_ASSIGN_OR_RETURN(auto g, unique_groups(*v, slice_layout(v->dims(), axis), sorted));
    count = Dim(static_cast<int64_t>(g.first.size()));
  }
  std::optional<Shape> y;
  if (!axis)
    y = Shape{count};
  else if (in) {
    y = *in;
    (*y)[*axis] = count;
  }
  ctx.set_output(0, dt, y);
  ctx.set_output(1, DataType::kInt64, Shape{count});
  ctx.set_output(2, DataType::kInt64, Shape{slices});
  ctx.set_output(3, DataType::kInt64, Shape{count});
  return Status();
}

Status ref_unique(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  KILN_ASSIGN_OR_RETURN(auto axis, unique_axis(ctx.node(), x.rank()));
  bool sorted = ctx.attrs().get_int("sorted", 1) != 0;
  SliceLayout l = slice_layout(x.dims(), axis);
  KILN_ASSIGN_OR_RETURN(auto g, unique_groups(x, l, sorted));
  auto u = static_cast<int64_t>(g.first.size());
  Dims yd = axis ? x.dims() : Dims{u};
  if (axis) yd[*axis] = u;
  Tensor& y = ensure_output(ctx, 0, x.dtype(), yd);
  size_t esize = dtype_size(x.dtype());
  auto inner = static_cast<size_t>(l.inner) * esize;
  const auto* src = static_cast<const uint8_t*>(x.data());
  auto* dst = static_cast<uint8_t*>(y.data());
  if (inner)
    for (int64_t o = 0; o < l.outer; ++o)
      for (int64_t k = 0; k < u; ++k)
        std::memcpy(dst + static_cast<size_t>(o * u + k) * inner,
                    src + static_cast<size_t>(o * l.count + g.first[static_cast<size_t>(k)]) * inner, inner);
  const std::vector<int64_t>* extra[] = {&g.first, &g.inverse, &g.counts};
  for (size_t i = 1; i < 4; ++i) {
    if (!ctx.has_output(i)) continue;
    const auto& v = *extra[i - 1];
    Tensor& t = ensure_output(ctx, i, DataType::kInt64, {static_cast<int64_t>(v.size())});
    if (!v.empty()) std::memcpy(t.data(), v.data(), v.size() * sizeof(int64_t));
  }
  return Status();
}

}  // namespace

void movement::add_unique_ops(OpRegistry& r) {
  r.add({.name = "Unique", .infer = infer_unique, .ref = ref_unique, .value_inputs = {0}});
}

}  // namespace kiln::ops

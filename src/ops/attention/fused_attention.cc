// FusedAttention (domain "kiln"): see fused_attention.h. The reference kernel
// computes in double through the resolved strides; the CUDA kernel is a
// flash-attention kernel (attention_cuda.cu).
#include "ops/attention/fused_attention.h"

#include <cmath>
#include <limits>
#include <map>

namespace kiln::ops::attn {

namespace {

Result<std::vector<ViewStep>> steps_of(const ir::Attributes& a, const char* name) {
  auto s = decode_view(a.get_ints(name));
  if (!s) return Status(ErrorCode::kInvalidModel, std::string("malformed view program '") + name + "'");
  return *s;
}

// Maps symbolic dims to negative sentinels so the dims-only view steps carry them.
struct DimNames {
  std::map<std::string, int64_t> ids;
  std::vector<std::string> names;
  int64_t encode(const Dim& d) {
    if (d.known()) return d.value;
    if (d.name.empty()) return -1;
    auto it = ids.find(d.name);
    if (it != ids.end()) return it->second;
    int64_t id = -2 - static_cast<int64_t>(names.size());
    ids[d.name] = id;
    names.push_back(d.name);
    return id;
  }
  Dim decode(int64_t v) const {
    if (v >= 0) return Dim(v);
    size_t k = static_cast<size_t>(-2 - v);
    return v <= -2 && k < names.size() ? Dim::symbol(names[k]) : Dim::unknown();
  }
};

constexpr int64_t kUnknownTarget = std::numeric_limits<int64_t>::min() / 4;

std::optional<std::vector<int64_t>> ints_of(const Tensor* t) {
  if (!t) return std::nullopt;
  std::vector<int64_t> v;
  for (int64_t i = 0; i < t->numel(); ++i) v.push_back(t->get_as_int64(i));
  return v;
}

// A Reshape step's target at inference: its value, or as many unknown dims as the
// shape tensor has elements (kept apart from -1, which asks to infer a dim).
std::optional<std::vector<int64_t>> reshape_target(const InferContext& ctx, const ViewStep& s) {
  if (s.op != kReshape || s.args.empty()) return std::nullopt;
  auto slot = static_cast<size_t>(s.args[0]);
  if (auto v = ints_of(ctx.value(slot))) return v;
  const Shape* sh = ctx.input_shape(slot);
  if (sh && sh->size() == 1 && (*sh)[0].known())
    return std::vector<int64_t>(static_cast<size_t>((*sh)[0].value), kUnknownTarget);
  return std::nullopt;
}

}  // namespace

Status infer_fused_attention(InferContext& ctx) {
  for (int i = 0; i < 3; ++i)
    if (!ctx.input_shape(i)) return ctx.error("needs Q, K and V shapes");
  DataType t = ctx.input_dtype(0);
  if (ctx.input_dtype(1) != t || ctx.input_dtype(2) != t) return ctx.error("Q, K and V dtypes differ");
  if (ctx.has_input(3) && ctx.input_dtype(3) != t) return ctx.error("the mask's dtype differs from Q's");
  DimNames names;
  // A reshape's -1 over symbolic dims ("4*batch" and the like), by base/shape.h's monomials.
  const attn::InferDimFn infer_dim = [&names](const std::vector<int64_t>& in, const std::vector<int64_t>& out,
                                              size_t at) {
    Shape a, b;
    for (int64_t v : in) a.push_back(names.decode(v));
    for (int64_t v : out) b.push_back(names.decode(v));
    return names.encode(infer_reshape_dim(a, b, at));
  };
  std::vector<int64_t> logical[3];
  const char* views[3] = {"q_view", "k_view", "v_view"};
  for (int i = 0; i < 3; ++i) {
    KILN_ASSIGN_OR_RETURN(auto steps, steps_of(ctx.attrs(), views[i]));
    for (const Dim& d : *ctx.input_shape(i)) logical[i].push_back(names.encode(d));
    for (const ViewStep& s : steps) {
      Status st = apply_step_dims(s, logical[i], reshape_target(ctx, s), &infer_dim);
      if (!st.ok()) return ctx.error(std::string(views[i]) + ": " + st.message());
    }
    if (logical[i].size() != 4)
      return ctx.error(std::string(views[i]) + " gives rank " + std::to_string(logical[i].size()) + ", not 4");
  }
  auto same = [](int64_t a, int64_t b) { return a == -1 || b == -1 || a == b; };
  if (!same(logical[0][3], logical[1][3])) return ctx.error("Q and K head sizes differ");
  if (!same(logical[1][2], logical[2][2])) return ctx.error("K and V sequence lengths differ");
  for (int i = 1; i < 3; ++i)
    for (int d = 0; d < 2; ++d)
      if (!same(logical[0][d], logical[i][d])) return ctx.error("Q, K and V batch/head dims differ");
  std::vector<int64_t> out = {logical[0][0], logical[0][1], logical[0][2], logical[2][3]};
  KILN_ASSIGN_OR_RETURN(auto osteps, steps_of(ctx.attrs(), "o_view"));
  for (const ViewStep& s : osteps) {
    if (s.op == kGather || s.op == kSlice) return ctx.error("o_view may only transpose and reshape");
    Status st = apply_step_dims(s, out, reshape_target(ctx, s), &infer_dim);
    if (!st.ok()) return ctx.error("o_view: " + st.message());
  }
  Shape y;
  for (int64_t v : out) y.push_back(names.decode(v));
  ctx.set_output(0, t, y);
  return Status();
}

namespace {

Result<Layout> input_layout(const KernelContext& ctx, int which, const char* attr, std::vector<int64_t>& dims) {
  KILN_ASSIGN_OR_RETURN(auto steps, steps_of(ctx.attrs(), attr));
  dims = ctx.input(which).dims();
  Layout l = contiguous_layout(dims);
  for (const ViewStep& s : steps) {
    std::optional<std::vector<int64_t>> shape;
    if (s.op == kReshape) {
      shape = ints_of(ctx.host_value(static_cast<size_t>(s.args.at(0))));
      if (!shape) return ctx.error(std::string(attr) + ": the shape of a reshape step is not known on the host",
                                   ErrorCode::kUnsupported);
    }
    KILN_RETURN_IF_ERROR(apply_step_layout(s, l, dims, shape).with_context(std::string("node ") +
                                                                           ctx.node().describe() + " " + attr));
  }
  if (dims.size() != 4) return ctx.error(std::string(attr) + " does not give a 4-D tensor");
  return l;
}

// Every element a layout addresses lies inside a buffer of `numel` elements (a
// hostile view program must not read or write outside its tensor).
bool inside(const Layout& l, int64_t numel) {
  int64_t hi = l.offset;
  if (l.offset < 0) return false;
  for (const AxisAtoms& d : l.dims)
    for (const Atom& a : d) {
      if (a.size <= 0) return true;  // empty: nothing is addressed
      if (a.stride < 0) return false;
      hi += (a.size - 1) * a.stride;
    }
  return hi < numel;
}

Result<OperandMap> to_map(const KernelContext& ctx, const Layout& l, const char* what, int64_t numel) {
  if (!inside(l, numel))
    return ctx.error(std::string(what) + " addresses elements outside its tensor of " + std::to_string(numel));
  OperandMap m;
  m.offset = l.offset;
  for (size_t i = 0; i < 4; ++i) {
    AxisAtoms a = l.dims[i];
    coalesce(a);
    if (a.size() > 2 || (i == 3 && a.size() > 1))
      return ctx.error(std::string(what) + ": axis " + std::to_string(i) + " is not a strided view",
                       ErrorCode::kUnsupported);
    if (a.size() == 1) m.ax[i].inner_s = a[0].stride;
    if (a.size() == 2) m.ax[i] = {a[1].size, a[0].stride, a[1].stride};
  }
  return m;
}

}  // namespace

Result<FusedAttentionGeometry> resolve_fused_attention(KernelContext& ctx) {
  FusedAttentionGeometry g;
  std::vector<int64_t> qd, kd, vd;
  KILN_ASSIGN_OR_RETURN(Layout ql, input_layout(ctx, 0, "q_view", qd));
  KILN_ASSIGN_OR_RETURN(Layout kl, input_layout(ctx, 1, "k_view", kd));
  KILN_ASSIGN_OR_RETURN(Layout vl, input_layout(ctx, 2, "v_view", vd));
  g.B = qd[0], g.H = qd[1], g.Sq = qd[2], g.D = qd[3], g.Sk = kd[2], g.Dv = vd[3];
  if (kd[0] != g.B || vd[0] != g.B || kd[1] != g.H || vd[1] != g.H || kd[3] != g.D || vd[2] != g.Sk)
    return ctx.error("logical Q " + dims_to_string(qd) + ", K " + dims_to_string(kd) + " and V " + dims_to_string(vd) +
                     " do not fit together");
  KILN_ASSIGN_OR_RETURN(g.q, to_map(ctx, ql, "q_view", ctx.input(0).numel()));
  KILN_ASSIGN_OR_RETURN(g.k, to_map(ctx, kl, "k_view", ctx.input(1).numel()));
  KILN_ASSIGN_OR_RETURN(g.v, to_map(ctx, vl, "v_view", ctx.input(2).numel()));

  // Output: run o_view forward for the intermediate dims, then back from the
  // output's contiguous layout.
  KILN_ASSIGN_OR_RETURN(auto osteps, steps_of(ctx.attrs(), "o_view"));
  std::vector<std::vector<int64_t>> before;
  std::vector<std::optional<std::vector<int64_t>>> shapes;
  std::vector<int64_t> d = {g.B, g.H, g.Sq, g.Dv};
  for (const ViewStep& s : osteps) {
    std::optional<std::vector<int64_t>> shape;
    if (s.op == kReshape) {
      shape = ints_of(ctx.host_value(static_cast<size_t>(s.args.at(0))));
      if (!shape) return ctx.error("o_view: the shape of a reshape step is not known on the host", ErrorCode::kUnsupported);
    }
    if (s.op == kGather || s.op == kSlice) return ctx.error("o_view may only transpose and reshape");
    before.push_back(d);
    shapes.push_back(shape);
    KILN_RETURN_IF_ERROR(apply_step_dims(s, d, shape));
  }
  if (d != ctx.output(0).dims())
    return ctx.error("o_view gives " + dims_to_string(d) + " but the output is " + dims_to_string(ctx.output(0).dims()));
  Layout ol = contiguous_layout(d);
  for (size_t i = osteps.size(); i-- > 0;) {
    const ViewStep& s = osteps[i];
    std::vector<int64_t> cur = d;
    switch (s.op) {
      case kTranspose: {
        std::vector<AxisAtoms> x(ol.dims.size());
        for (size_t j = 0; j < s.args.size(); ++j) x[static_cast<size_t>(s.args[j])] = ol.dims[j];
        ol.dims = std::move(x);
        break;
      }
      case kReshape:
        if (!reshape_layout(ol, before[i])) return ctx.error("o_view: a reshape is not a strided view", ErrorCode::kUnsupported);
        break;
      case kSqueeze: {  // inverse: unsqueeze the squeezed axes (relative to the step's input rank)
        std::vector<int64_t> axes;
        for (int64_t a : s.args) axes.push_back(norm_axis(a, static_cast<int64_t>(before[i].size())));
        KILN_RETURN_IF_ERROR(apply_step_layout({kUnsqueeze, axes}, ol, cur, std::nullopt));
        break;
      }
      case kUnsqueeze: {
        std::vector<int64_t> axes;
        for (int64_t a : s.args) axes.push_back(norm_axis(a, static_cast<int64_t>(d.size())));
        KILN_RETURN_IF_ERROR(apply_step_layout({kSqueeze, axes}, ol, cur, std::nullopt));
        break;
      }
      default:
        return ctx.error("o_view may only transpose and reshape");
    }
    d = before[i];
  }
  KILN_ASSIGN_OR_RETURN(g.o, to_map(ctx, ol, "o_view", ctx.output(0).numel()));

  if (ctx.has_input(3)) {
    const Dims& md = ctx.input(3).dims();
    if (md.size() > 4) return ctx.error("the mask has rank " + std::to_string(md.size()) + " (at most 4)");
    int64_t want[4] = {g.B, g.H, g.Sq, g.Sk};
    int64_t stride = 1;
    for (size_t i = 0; i < md.size(); ++i) {
      size_t j = 4 - md.size() + (md.size() - 1 - i);  // logical axis of mask dim (from the right)
      int64_t n = md[md.size() - 1 - i];
      if (n != 1 && n != want[j])
        return ctx.error("mask " + dims_to_string(md) + " does not broadcast to " +
                         dims_to_string({g.B, g.H, g.Sq, g.Sk}));
      g.mask_stride[j] = n == 1 ? 0 : stride;
      stride *= n;
    }
    g.has_mask = true;
  }
  double scale = ctx.attrs().get_float("scale", 1.f);
  std::vector<int64_t> dyn = ctx.attrs().get_ints("scale_inputs");
  for (size_t i = 0; i + 1 < dyn.size(); i += 2) {
    const Tensor* t = ctx.host_value(static_cast<size_t>(dyn[i]));
    if (!t || t->numel() != 1)
      return ctx.error("scale input " + std::to_string(dyn[i]) + " is not a host-known scalar", ErrorCode::kUnsupported);
    double x = t->get_as_double(0);
    scale = dyn[i + 1] ? scale / x : scale * x;
  }
  g.scale = static_cast<float>(scale);
  g.zero_masked_rows = ctx.attrs().get_int("zero_masked_rows", 0) != 0;
  return g;
}

namespace {

inline int64_t off(const OperandMap& m, int64_t b, int64_t h, int64_t s, int64_t d) {
  auto at = [](const AxisMap& a, int64_t i) { return (i / a.inner_n) * a.outer_s + (i % a.inner_n) * a.inner_s; };
  return m.offset + at(m.ax[0], b) + at(m.ax[1], h) + at(m.ax[2], s) + at(m.ax[3], d);
}

Status ref_fused_attention(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(FusedAttentionGeometry g, resolve_fused_attention(ctx));
  const Tensor &q = ctx.input(0), &k = ctx.input(1), &v = ctx.input(2);
  Tensor& y = ctx.output(0);
  if (y.numel() == 0) return Status();
  const Tensor* mask = ctx.has_input(3) ? &ctx.input(3) : nullptr;
  std::vector<double> s(static_cast<size_t>(g.Sk));
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t h = 0; h < g.H; ++h)
      for (int64_t i = 0; i < g.Sq; ++i) {
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < g.Sk; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < g.D; ++d) dot += q.get_as_double(off(g.q, b, h, i, d)) * k.get_as_double(off(g.k, b, h, j, d));
          double x = dot * g.scale;
          if (mask)
            x += mask->get_as_double(b * g.mask_stride[0] + h * g.mask_stride[1] + i * g.mask_stride[2] +
                                     j * g.mask_stride[3]);
          s[static_cast<size_t>(j)] = x;
          mx = std::max(mx, x);
        }
        double sum = 0;
        bool all_masked = std::isinf(mx) && mx < 0;
        for (double& x : s) sum += (x = all_masked ? 0.0 : std::exp(x - mx));
        for (int64_t d = 0; d < g.Dv; ++d) {
          double o = 0;
          for (int64_t j = 0; j < g.Sk; ++j) o += s[static_cast<size_t>(j)] * v.get_as_double(off(g.v, b, h, j, d));
          double r = all_masked ? (g.zero_masked_rows ? 0.0 : std::numeric_limits<double>::quiet_NaN()) : o / sum;
          y.set_from_double(off(g.o, b, h, i, d), r);
        }
      }
  return Status();
}

}  // namespace

void register_fused_attention(OpRegistry& r) {
  r.add({.name = "FusedAttention",
         .domain = "kiln",
         .infer = infer_fused_attention,
         .ref = ref_fused_attention,
         .value_inputs = {4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}});
}

}  // namespace kiln::ops::attn

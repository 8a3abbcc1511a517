// Einsum: sums products of the inputs over the labels an Einstein-notation
// equation leaves out of the output (with "...", repeated labels and implicit output).
#include <algorithm>
#include <array>
#include <string>
#include <type_traits>
#include <vector>

#include "backends/cpu/gemm.h"
#include "base/dispatch.h"
#include "ops/common.h"
#include "ops/misc/einsum_plan.h"

namespace kiln::ops {
namespace einsum {
namespace {

int letter_code(char c) {
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;  // numpy orders upper case first
  if (c >= 'A' && c <= 'Z') return c - 'A';
  return -2;
}

}  // namespace

Result<ParsedEquation> parse_equation(const ir::Node& node) {
  auto err = [&](const std::string& m) {
    return Status(ErrorCode::kInvalidModel, "node " + node.describe() + ": " + m);
  };
  std::string eq;
  for (char c : node.attrs.get_string("equation", ""))
    if (c != ' ') eq += c;
  ParsedEquation p;
  auto parse_term = [&](const std::string& s) -> Result<Term> {
    Term t;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '.') {
        if (s.compare(i, 3, "...") != 0) return err("malformed ellipsis in equation '" + eq + "'");
        if (std::count(t.begin(), t.end(), kEllipsis)) return err("more than one ellipsis in a term of '" + eq + "'");
        t.push_back(kEllipsis);
        i += 2;
        continue;
      }
      int code = letter_code(s[i]);
      if (code < 0) return err(std::string("invalid character '") + s[i] + "' in equation '" + eq + "'");
      t.push_back(code);
    }
    return t;
  };
  size_t arrow = eq.find("->");
  std::string lhs = arrow == std::string::npos ? eq : eq.substr(0, arrow);
  size_t start = 0;
  while (true) {
    size_t comma = lhs.find(',', start);
    KILN_ASSIGN_OR_RETURN(
        Term t, parse_term(lhs.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
    p.inputs.push_back(t);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (arrow != std::string::npos) {
    p.explicit_output = true;
    KILN_ASSIGN_OR_RETURN(p.output, parse_term(eq.substr(arrow + 2)));
    for (size_t i = 0; i < p.output.size(); ++i)
      if (std::count(p.output.begin(), p.output.end(), p.output[i]) > 1)
        return err("output label repeated in equation '" + eq + "'");
  }
  return p;
}

Result<Labels> resolve_labels(const ir::Node& node, const ParsedEquation& p, const std::vector<int64_t>& ranks) {
  auto err = [&](const std::string& m) {
    return Status(ErrorCode::kInvalidModel, "node " + node.describe() + ": " + m);
  };
  if (p.inputs.size() != ranks.size())
    return err("equation has " + std::to_string(p.inputs.size()) + " input terms but the node has " +
               std::to_string(ranks.size()) + " inputs");
  Labels L;
  std::vector<int> ell_count(ranks.size(), 0);
  for (size_t i = 0; i < ranks.size(); ++i) {
    int64_t letters = 0;
    bool has_ell = false;
    for (int c : p.inputs[i])
      if (c == kEllipsis) has_ell = true;
    letters = static_cast<int64_t>(p.inputs[i].size()) - (has_ell ? 1 : 0);
    if (has_ell ? ranks[i] < letters : ranks[i] != letters)
      return err("term " + std::to_string(i) + " does not match input rank " + std::to_string(ranks[i]));
    ell_count[i] = has_ell ? static_cast<int>(ranks[i] - letters) : 0;
    L.num_ellipsis = std::max(L.num_ellipsis, ell_count[i]);
  }
  std::array<int, 52> uses{};
  for (size_t i = 0; i < ranks.size(); ++i) {
    std::vector<int> ids;
    for (int c : p.inputs[i]) {
      if (c == kEllipsis) {
        for (int e = 0; e < ell_count[i]; ++e) ids.push_back(52 + L.num_ellipsis - ell_count[i] + e);
      } else {
        ids.push_back(c);
        ++uses[c];
      }
    }
    L.inputs.push_back(ids);
  }
  if (p.explicit_output) {
    bool out_ell = false;
    for (int c : p.output) {
      if (c == kEllipsis) {
        out_ell = true;
        for (int e = 0; e < L.num_ellipsis; ++e) L.output.push_back(52 + e);
      } else {
        if (!uses[c]) return err("output label does not appear in any input");
        L.output.push_back(c);
      }
    }
    if (!out_ell && L.num_ellipsis > 0) return err("the output has no '...' but the inputs have broadcast dims");
  } else {
    // Implicit output: broadcast dims, then labels used exactly once, in alphabetical order.
    for (int e = 0; e < L.num_ellipsis; ++e) L.output.push_back(52 + e);
    for (int c = 0; c < 52; ++c)
      if (uses[c] == 1) L.output.push_back(c);
  }
  return L;
}

Result<Plan> make_plan(const ir::Node& node, const std::vector<Dims>& input_dims) {
  KILN_ASSIGN_OR_RETURN(ParsedEquation p, parse_equation(node));
  std::vector<int64_t> ranks;
  for (const Dims& d : input_dims) ranks.push_back(static_cast<int64_t>(d.size()));
  Plan plan;
  KILN_ASSIGN_OR_RETURN(plan.labels, resolve_labels(node, p, ranks));
  const Labels& L = plan.labels;
  int num_labels = 52 + L.num_ellipsis;
  std::vector<int64_t> size(num_labels, -1);
  for (size_t i = 0; i < input_dims.size(); ++i) {
    const Dims& d = input_dims[i];
    for (size_t k = 0; k < d.size(); ++k) {
      int64_t& s = size[L.inputs[i][k]];
      if (s < 0 || s == 1)
        s = d[k];
      else if (d[k] != s && d[k] != 1)
        return Status(ErrorCode::kInvalidArgument, "node " + node.describe() + ": label sizes do not match");
    }
  }
  plan.order = L.output;
  for (int id = 0; id < num_labels; ++id)
    if (size[id] >= 0 && std::find(plan.order.begin(), plan.order.end(), id) == plan.order.end())
      plan.order.push_back(id);
  for (int id : plan.order) plan.loop_dims.push_back(size[id]);
  plan.num_output_loops = L.output.size();
  plan.strides.assign(input_dims.size(), std::vector<int64_t>(plan.order.size(), 0));
  for (size_t i = 0; i < input_dims.size(); ++i) {
    const Dims& d = input_dims[i];
    auto st = strides_of(d);
    for (size_t k = 0; k < d.size(); ++k) {
      if (d[k] == 1 && size[L.inputs[i][k]] != 1) continue;
      size_t pos = std::find(plan.order.begin(), plan.order.end(), L.inputs[i][k]) - plan.order.begin();
      plan.strides[i][pos] += st[k];
    }
  }
  return plan;
}

}  // namespace einsum

namespace {

using namespace einsum;  // NOLINT(google-build-using-namespace)

Status infer_einsum(InferContext& ctx) {
  if (ctx.num_inputs() == 0) return ctx.error("Einsum needs at least one input");
  DataType dt = ctx.input_dtype(0);
  if (dt == DataType::kBool || dt == DataType::kString || !dtype_is_supported(dt))
    return ctx.unsupported(std::string("dtype ") + dtype_name(dt) + " is not supported");
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) return ctx.error("input " + std::to_string(i) + " is missing");
    if (ctx.input_dtype(i) != dt) return ctx.error("all inputs must have the same dtype");
  }
  KILN_ASSIGN_OR_RETURN(ParsedEquation p, parse_equation(ctx.node()));
  std::vector<int64_t> ranks;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Shape* s = ctx.input_shape(i);
    if (!s) {
      ctx.set_output(0, dt, std::nullopt);
      return Status();
    }
    ranks.push_back(static_cast<int64_t>(s->size()));
  }
  KILN_ASSIGN_OR_RETURN(Labels L, resolve_labels(ctx.node(), p, ranks));
  std::vector<std::optional<Dim>> label_dim(52 + L.num_ellipsis);
  for (size_t i = 0; i < L.inputs.size(); ++i) {
    const Shape& s = *ctx.input_shape(i);
    for (size_t d = 0; d < s.size(); ++d) {
      auto& ld = label_dim[L.inputs[i][d]];
      if (!ld) {
        ld = s[d];
        continue;
      }
      auto b = broadcast_dim(*ld, s[d]);
      if (!b) return ctx.error("label sizes " + ld->to_string() + " and " + s[d].to_string() + " do not match");
      ld = *b;
    }
  }
  Shape out;
  for (int id : L.output) out.push_back(label_dim[id] ? *label_dim[id] : Dim::unknown());
  ctx.set_output(0, dt, out);
  return Status();
}

template <typename T>
using EinsumAcc =
    std::conditional_t<std::is_floating_point_v<T> || std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>, double,
                       std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>;

template <typename T, typename A>
A to_acc(T v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
    return static_cast<float>(v);
  else
    return static_cast<A>(v);
}

template <typename T, typename A>
T from_acc(A v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
    return T(static_cast<float>(v));
  else
    return static_cast<T>(v);
}

Status ref_einsum(KernelContext& ctx) {
  size_t n_in = ctx.num_inputs();
  std::vector<Dims> dims;
  for (size_t i = 0; i < n_in; ++i) dims.push_back(ctx.input(i).dims());
  KILN_ASSIGN_OR_RETURN(Plan plan, make_plan(ctx.node(), dims));
  const Dims& loop_dims = plan.loop_dims;
  Tensor& y = ctx.output(0);
  int64_t out_count = y.numel();
  int64_t sum_count = 1;
  for (size_t k = plan.num_output_loops; k < loop_dims.size(); ++k) sum_count *= loop_dims[k];
  KILN_DISPATCH_NUMERIC(ctx.input(0).dtype(), T, {
    using A = EinsumAcc<T>;
    std::vector<const T*> ptr(n_in);
    for (size_t i = 0; i < n_in; ++i) ptr[i] = ctx.input(i).data_as<T>();
    T* yp = y.data_as<T>();
    MultiIndex it(loop_dims, plan.strides);
    for (int64_t o = 0; o < out_count; ++o) {
      A acc = A(0);
      for (int64_t s = 0; s < sum_count; ++s, it.next()) {
        A prod = A(1);
        for (size_t i = 0; i < n_in; ++i) {
          prod *= to_acc<T, A>(ptr[i][it.offset(i)]);
        }
        acc += prod;
      }
      yp[o] = from_acc<T, A>(acc);
    }
  });
  return Status();
}

/// Copies src (dims d) into dst laid out as d permuted by perm (dst dim i = src dim perm[i]).
void permute(const float* src, const Dims& d, const std::vector<size_t>& perm, float* dst) {
  auto st = strides_of(d);
  Dims od;
  std::vector<int64_t> ps;
  for (size_t p : perm) od.push_back(d[p]), ps.push_back(st[p]);
  int64_t n = dims_volume(od);
  MultiIndex it(od, {ps});
  for (int64_t i = 0; i < n; ++i, it.next()) dst[i] = src[it.offset(0)];
}

bool is_identity(const std::vector<size_t>& perm) {
  for (size_t i = 0; i < perm.size(); ++i)
    if (perm[i] != i) return false;
  return true;
}

/// float32 two-operand contractions without diagonals or broadcasting: permute to
/// [batch, M, K] x [batch, K, N], run the GEMM per batch, permute to the output order.
Status fast_einsum(KernelContext& ctx) {
  if (ctx.num_inputs() != 2 || ctx.input(0).dtype() != DataType::kFloat32) return ref_einsum(ctx);
  if (ctx.output(0).numel() == 0) return Status();
  KILN_ASSIGN_OR_RETURN(ParsedEquation p, parse_equation(ctx.node()));
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  KILN_ASSIGN_OR_RETURN(Labels L, resolve_labels(ctx.node(), p, {a.rank(), b.rank()}));
  const std::vector<int>& la = L.inputs[0];
  const std::vector<int>& lb = L.inputs[1];
  auto pos = [](const std::vector<int>& v, int id) {
    auto it = std::find(v.begin(), v.end(), id);
    return it == v.end() ? -1 : static_cast<int>(it - v.begin());
  };
  auto distinct = [](std::vector<int> v) {
    std::sort(v.begin(), v.end());
    return std::adjacent_find(v.begin(), v.end()) == v.end();
  };
  if (!distinct(la) || !distinct(lb)) return ref_einsum(ctx);
  std::vector<int> batch, ms, ns, ks;
  for (int id : L.output) {
    bool ina = pos(la, id) >= 0, inb = pos(lb, id) >= 0;
    if (ina && inb)
      batch.push_back(id);
    else if (ina)
      ms.push_back(id);
    else
      ns.push_back(id);
  }
  for (int id : la) {
    if (pos(L.output, id) >= 0) continue;
    if (pos(lb, id) < 0) return ref_einsum(ctx);  // summed over one operand only
    ks.push_back(id);
  }
  for (int id : lb)
    if (pos(L.output, id) < 0 && pos(la, id) < 0) return ref_einsum(ctx);
  auto size_of = [&](int id) {
    int i = pos(la, id);
    return i >= 0 ? a.dim(i) : b.dim(pos(lb, id));
  };
  for (int id : la)
    if (pos(lb, id) >= 0 && a.dim(pos(la, id)) != b.dim(pos(lb, id))) return ref_einsum(ctx);  // broadcasting
  int64_t B = 1, M = 1, N = 1, K = 1;
  for (int id : batch) B *= size_of(id);
  for (int id : ms) M *= size_of(id);
  for (int id : ns) N *= size_of(id);
  for (int id : ks) K *= size_of(id);
  std::vector<size_t> pa, pb, pc;
  for (int id : batch) pa.push_back(pos(la, id));
  for (int id : ms) pa.push_back(pos(la, id));
  for (int id : ks) pa.push_back(pos(la, id));
  for (int id : batch) pb.push_back(pos(lb, id));
  for (int id : ks) pb.push_back(pos(lb, id));
  for (int id : ns) pb.push_back(pos(lb, id));
  std::vector<int> c_labels = batch;
  c_labels.insert(c_labels.end(), ms.begin(), ms.end());
  c_labels.insert(c_labels.end(), ns.begin(), ns.end());
  for (int id : L.output) pc.push_back(pos(c_labels, id));
  std::vector<float> abuf, bbuf, cbuf;
  const float* ap = a.data_as<float>();
  const float* bp = b.data_as<float>();
  if (!is_identity(pa))
    abuf.resize(static_cast<size_t>(a.numel())), permute(ap, a.dims(), pa, abuf.data()), ap = abuf.data();
  if (!is_identity(pb))
    bbuf.resize(static_cast<size_t>(b.numel())), permute(bp, b.dims(), pb, bbuf.data()), bp = bbuf.data();
  Tensor& y = ctx.output(0);
  float* cp = y.data_as<float>();
  if (!is_identity(pc)) cbuf.resize(static_cast<size_t>(B * M * N)), cp = cbuf.data();
  for (int64_t bi = 0; bi < B; ++bi) {
    if (K == 0) {
      std::fill(cp + bi * M * N, cp + (bi + 1) * M * N, 0.f);
      continue;
    }
    cpu::sgemm(false, false, M, N, K, 1.f, ap + bi * M * K, K, bp + bi * K * N, N, 0.f, cp + bi * M * N, N,
               ctx.num_threads());
  }
  if (!is_identity(pc)) {
    Dims cd;
    for (int id : c_labels) cd.push_back(size_of(id));
    permute(cp, cd, pc, y.data_as<float>());
  }
  return Status();
}

}  // namespace

void register_einsum_ops(OpRegistry& r) {
  r.add({.name = "Einsum",
         .infer = infer_einsum,
         .ref = ref_einsum,
         .fast = {{"cpu.gemm", fast_einsum, nullptr}},
         .min_opset = 12});
}

}  // namespace kiln::ops

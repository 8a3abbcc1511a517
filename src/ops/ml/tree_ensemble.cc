// TreeEnsemble (ai.onnx.ml opset 5): evaluates decision trees on rows of X [N, F]
// and aggregates leaf weights per target into [N, n_targets].
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ops/common.h"
#include "ops/ml/ml_ops.h"

namespace kiln::ops {
namespace {

enum Mode { kLeq = 0, kLt, kGte, kGt, kEq, kNeq, kMember };

struct Ensemble {
  std::vector<double> splits;
  std::vector<int64_t> feature, mode, t_id, f_id, t_leaf, f_leaf, missing_true, roots, leaf_target;
  std::vector<double> leaf_weight;
  std::vector<std::vector<double>> members;  // per node, for kMember
  int64_t n_targets = 0, aggregate = 1, post = 0;
};

std::vector<double> tensor_doubles(const Tensor* t) {
  std::vector<double> v;
  if (!t) return v;
  for (int64_t i = 0; i < t->numel(); ++i) v.push_back(t->get_as_double(i));
  return v;
}

Result<Ensemble> load_ensemble(const ir::Node& node) {
  auto err = [&](const std::string& m) { return Status(ErrorCode::kInvalidModel, "node " + node.describe() + ": " + m); };
  const auto& a = node.attrs;
  Ensemble e;
  e.splits = tensor_doubles(a.get_tensor("nodes_splits"));
  for (double m : tensor_doubles(a.get_tensor("nodes_modes"))) e.mode.push_back(static_cast<int64_t>(m));
  e.feature = a.get_ints("nodes_featureids");
  e.t_id = a.get_ints("nodes_truenodeids");
  e.f_id = a.get_ints("nodes_falsenodeids");
  e.t_leaf = a.get_ints("nodes_trueleafs");
  e.f_leaf = a.get_ints("nodes_falseleafs");
  e.missing_true = a.get_ints("nodes_missing_value_tracks_true");
  e.roots = a.get_ints("tree_roots");
  e.leaf_target = a.get_ints("leaf_targetids");
  e.leaf_weight = tensor_doubles(a.get_tensor("leaf_weights"));
  e.n_targets = a.get_int("n_targets", 0);
  e.aggregate = a.get_int("aggregate_function", 1);
  e.post = a.get_int("post_transform", 0);
  size_t n = e.splits.size();
  if (e.mode.size() != n || e.feature.size() != n || e.t_id.size() != n || e.f_id.size() != n ||
      e.t_leaf.size() != n || e.f_leaf.size() != n)
    return err("the nodes_* attributes must all have the same length");
  if (!e.missing_true.empty() && e.missing_true.size() != n)
    return err("nodes_missing_value_tracks_true must have one entry per node");
  if (e.leaf_target.size() != e.leaf_weight.size()) return err("leaf_targetids and leaf_weights differ in length");
  if (e.n_targets <= 0) return err("n_targets must be positive");
  if (e.aggregate < 0 || e.aggregate > 3) return err("aggregate_function must be 0..3");
  if (e.post < 0 || e.post > 4) return err("post_transform must be 0..4");
  if (e.post == 4) return Status(ErrorCode::kUnsupported, "node " + node.describe() + ": post_transform PROBIT is not supported");
  for (int64_t t : e.leaf_target)
    if (t < 0 || t >= e.n_targets) return err("leaf_targetids must be in [0, n_targets)");
  for (size_t i = 0; i < n; ++i) {
    if (e.mode[i] < kLeq || e.mode[i] > kMember) return err("nodes_modes must be 0..6");
    if (e.feature[i] < 0) return err("nodes_featureids must be non-negative");
    for (auto [id, leaf] : {std::pair{e.t_id[i], e.t_leaf[i]}, std::pair{e.f_id[i], e.f_leaf[i]}}) {
      size_t lim = leaf ? e.leaf_weight.size() : n;
      if (id < 0 || static_cast<size_t>(id) >= lim) return err("a node's child id is out of range");
    }
  }
  for (int64_t r : e.roots)
    if (r < 0 || static_cast<size_t>(r) >= n) return err("tree_roots entry out of range");
  // Members are listed in nodes_modes order, each set terminated by NaN.
  e.members.resize(n);
  auto mv = tensor_doubles(a.get_tensor("membership_values"));
  size_t p = 0;
  for (size_t i = 0; i < n; ++i) {
    if (e.mode[i] != kMember) continue;
    if (p >= mv.size() && mv.empty()) return err("set membership nodes need membership_values");
    while (p < mv.size() && !std::isnan(mv[p])) e.members[i].push_back(mv[p++]);
    ++p;
  }
  return e;
}

bool goes_true(const Ensemble& e, size_t i, double v) {
  if (std::isnan(v) && !e.missing_true.empty() && e.missing_true[i]) return true;
  double s = e.splits[i];
  switch (e.mode[i]) {
    case kLeq: return v <= s;
    case kLt: return v < s;
    case kGte: return v >= s;
    case kGt: return v > s;
    case kEq: return v == s;
    case kNeq: return v != s;
    default:
      for (double m : e.members[i])
        if (m == v) return true;
      return false;
  }
}

Status infer_tree_ensemble(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Shape* x, require_shape(ctx, 0));
  if (!dtype_is_float(ctx.input_dtype(0))) return ctx.unsupported("TreeEnsemble needs a floating-point X");
  if (x->size() != 2) return ctx.error("X must be [N, F]");
  KILN_ASSIGN_OR_RETURN(Ensemble e, load_ensemble(ctx.node()));
  for (int64_t f : e.feature)
    if ((*x)[1].known() && f >= (*x)[1].value) return ctx.error("nodes_featureids exceed X's feature count");
  ctx.set_output(0, ctx.input_dtype(0), Shape{(*x)[0], Dim(e.n_targets)});
  return Status();
}

Status ref_tree_ensemble(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(Ensemble e, load_ensemble(ctx.node()));
  int64_t rows = x.dim(0), feats = x.dim(1), nt = e.n_targets;
  for (int64_t f : e.feature)
    if (f >= feats) return ctx.error("nodes_featureids exceed X's feature count");
  double init = e.aggregate == 2 ? std::numeric_limits<double>::max()
                                 : e.aggregate == 3 ? std::numeric_limits<double>::lowest() : 0.0;
  std::vector<double> out(static_cast<size_t>(nt));
  size_t max_steps = e.splits.size() + 1;
  for (int64_t r = 0; r < rows; ++r) {
    std::fill(out.begin(), out.end(), init);
    for (int64_t root : e.roots) {
      size_t leaf;
      if (e.t_leaf[root] && e.f_leaf[root] && e.t_id[root] == e.f_id[root]) {
        // A tree that is a single leaf: its leaf shares the root's index.
        leaf = static_cast<size_t>(root);
        if (leaf >= e.leaf_weight.size()) return ctx.error("single-leaf tree root has no leaf");
      } else {
        size_t i = static_cast<size_t>(root), steps = 0;
        while (true) {
          if (++steps > max_steps) return ctx.error("tree has a cycle");
          bool t = goes_true(e, i, x.get_as_double(r * feats + e.feature[i]));
          int64_t id = t ? e.t_id[i] : e.f_id[i];
          if (t ? e.t_leaf[i] : e.f_leaf[i]) {
            leaf = static_cast<size_t>(id);
            break;
          }
          i = static_cast<size_t>(id);
        }
      }
      double w = e.leaf_weight[leaf];
      double& o = out[e.leaf_target[leaf]];
      switch (e.aggregate) {
        case 0: o += w / static_cast<double>(e.roots.size()); break;
        case 1: o += w; break;
        case 2: o = std::min(o, w); break;
        default: o = std::max(o, w); break;
      }
    }
    if (e.post == 1 || e.post == 3) {
      // SOFTMAX_ZERO leaves exact zeros at zero.
      double mx = std::numeric_limits<double>::lowest(), sum = 0;
      for (double v : out) mx = std::max(mx, v);
      for (double& v : out) {
        v = (e.post == 3 && v == 0) ? 0 : std::exp(v - mx);
        sum += v;
      }
      for (double& v : out) v = sum > 0 ? v / sum : 0;
    } else if (e.post == 2) {
      for (double& v : out) v = 1.0 / (1.0 + std::exp(-v));
    }
    for (int64_t k = 0; k < nt; ++k) y.set_from_double(r * nt + k, out[k]);
  }
  return Status();
}

}  // namespace

void add_tree_ensemble_op(OpRegistry& r) {
  r.add({.name = "TreeEnsemble", .domain = "ai.onnx.ml", .infer = infer_tree_ensemble, .ref = ref_tree_ensemble,
         .min_opset = 5});
}

}  // namespace kiln::ops

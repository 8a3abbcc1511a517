// TfIdfVectorizer: counts the pool's n-grams (with up to max_skip_count skipped items
// between members) in each row of int32/int64 tokens, then applies TF / IDF / TFIDF.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "ops/common.h"
#include "ops/ml/ml_ops.h"

namespace kiln::ops {
namespace {

struct TfIdfSpec {
  int64_t min_n = 0, max_n = 0, max_skip = 0, out_size = 0;
  int mode = 0;  // 0 TF, 1 IDF, 2 TFIDF
  std::map<std::vector<int64_t>, int64_t> grams;  // n-gram -> output index
  std::vector<float> weights;                     // per pool n-gram, by output index
};

Result<TfIdfSpec> tfidf_spec(const ir::Node& node) {
  auto err = [&](const std::string& m) { return Status(ErrorCode::kInvalidModel, "node " + node.describe() + ": " + m); };
  const auto& a = node.attrs;
  TfIdfSpec s;
  if (a.has("pool_strings")) return Status(ErrorCode::kUnsupported, "node " + node.describe() + ": string pools are not supported");
  s.min_n = a.get_int("min_gram_length", 0);
  s.max_n = a.get_int("max_gram_length", 0);
  s.max_skip = a.get_int("max_skip_count", 0);
  if (s.min_n < 1 || s.max_n < s.min_n) return err("need 1 <= min_gram_length <= max_gram_length");
  if (s.max_skip < 0) return err("max_skip_count must be non-negative");
  std::string mode = a.get_string("mode", "");
  if (mode == "TF") s.mode = 0;
  else if (mode == "IDF") s.mode = 1;
  else if (mode == "TFIDF") s.mode = 2;
  else return err("mode must be TF, IDF or TFIDF, got '" + mode + "'");
  auto counts = a.get_ints("ngram_counts");
  auto indexes = a.get_ints("ngram_indexes");
  auto pool = a.get_ints("pool_int64s");
  auto w = a.get_floats("weights");
  // ngram_counts[i] is where the (i+1)-grams start in the pool.
  int64_t ordinal = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    int64_t n = static_cast<int64_t>(i) + 1;
    int64_t begin = counts[i];
    int64_t end = i + 1 < counts.size() ? counts[i + 1] : static_cast<int64_t>(pool.size());
    if (begin < 0 || end < begin || end > static_cast<int64_t>(pool.size()) || (end - begin) % n != 0)
      return err("ngram_counts does not partition pool_int64s into n-grams");
    for (int64_t p = begin; p < end; p += n, ++ordinal) {
      if (ordinal >= static_cast<int64_t>(indexes.size())) return err("ngram_indexes has fewer entries than the pool");
      int64_t out = indexes[ordinal];
      if (out < 0) return err("ngram_indexes must be non-negative");
      s.grams[std::vector<int64_t>(pool.begin() + p, pool.begin() + p + n)] = out;
      s.out_size = std::max(s.out_size, out + 1);
    }
  }
  for (int64_t v : indexes) s.out_size = std::max(s.out_size, v + 1);
  if (!w.empty() && static_cast<int64_t>(w.size()) != ordinal) return err("weights must have one entry per pool n-gram");
  s.weights.assign(static_cast<size_t>(s.out_size), 1.f);
  if (!w.empty()) {
    for (int64_t i = 0; i < static_cast<int64_t>(w.size()) && i < static_cast<int64_t>(indexes.size()); ++i)
      s.weights[indexes[i]] = w[i];
  }
  return s;
}

Status infer_tfidf(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Shape* x, require_shape(ctx, 0));
  DataType t = ctx.input_dtype(0);
  if (t == DataType::kString) return ctx.unsupported("string inputs are not supported");
  if (t != DataType::kInt32 && t != DataType::kInt64) return ctx.error("input must be int32 or int64");
  if (x->size() > 2) return ctx.error("input must be [C] or [N, C]");
  KILN_ASSIGN_OR_RETURN(TfIdfSpec s, tfidf_spec(ctx.node()));
  Shape out;
  if (x->size() == 2) out.push_back((*x)[0]);
  out.push_back(Dim(s.out_size));
  ctx.set_output(0, DataType::kFloat32, out);
  return Status();
}

Status ref_tfidf(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(TfIdfSpec s, tfidf_spec(ctx.node()));
  int64_t rows = x.rank() == 2 ? x.dim(0) : 1;
  int64_t c = x.rank() == 0 ? 1 : x.dims().back();
  std::vector<float> counts(static_cast<size_t>(s.out_size));
  std::vector<int64_t> gram;
  for (int64_t r = 0; r < rows; ++r) {
    std::fill(counts.begin(), counts.end(), 0.f);
    for (int64_t n = s.min_n; n <= s.max_n; ++n) {
      // Unigrams do not depend on the skip distance: count them once.
      int64_t skips = n == 1 ? 0 : s.max_skip;
      for (int64_t sk = 0; sk <= skips; ++sk) {
        int64_t dist = sk + 1;
        for (int64_t i = 0; i + dist * (n - 1) < c; ++i) {
          gram.clear();
          for (int64_t t = 0; t < n; ++t) gram.push_back(x.get_as_int64(r * c + i + t * dist));
          auto it = s.grams.find(gram);
          if (it != s.grams.end()) counts[it->second] += 1.f;
        }
      }
    }
    for (int64_t k = 0; k < s.out_size; ++k) {
      float v = counts[k];
      if (s.mode == 1) v = v > 0 ? s.weights[k] : 0.f;
      else if (s.mode == 2) v *= s.weights[k];
      y.data_as<float>()[r * s.out_size + k] = v;
    }
  }
  return Status();
}

}  // namespace

void add_tfidf_op(OpRegistry& r) {
  r.add({.name = "TfIdfVectorizer", .infer = infer_tfidf, .ref = ref_tfidf, .min_opset = 9});
}

}  // namespace kiln::ops

// Strided views for FusedAttention (domain "kiln"). The fuse_attention pass
// folds the Transpose/Reshape/Squeeze/Unsqueeze/Gather/Slice chains that
// exporters put around attention (head split and merge, packed QKV) into a
// "view program" per operand; the kernels replay it on the host at launch and
// read (or write) the base tensor through strides, so none of those copies run.
//
// A program is a flat int list of steps: {op, nargs, args...}:
//   kTranspose perm...            kReshape slot allowzero (slot: node input holding the shape)
//   kSqueeze axes...              kUnsqueeze axes...
//   kGather axis index            kSlice axis start end step
// A layout maps each dim to up to a few "atoms" (size, stride), outer first:
// reshaping a strided tensor whose merged dims are not contiguous (e.g. a
// [S, B*H, D] view of a [S, B, 3*H*D] buffer) keeps the dims' atoms apart, and
// the later split finds them again.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/shape.h"
#include "kiln/types.h"

namespace kiln::ops::attn {

enum ViewOp : int64_t { kTranspose = 1, kReshape = 2, kSqueeze = 3, kUnsqueeze = 4, kGather = 5, kSlice = 6 };

struct ViewStep {
  ViewOp op;
  std::vector<int64_t> args;
};

/// Splits an encoded program; nullopt when malformed.
inline std::optional<std::vector<ViewStep>> decode_view(const std::vector<int64_t>& code) {
  std::vector<ViewStep> steps;
  for (size_t i = 0; i < code.size();) {
    if (i + 2 > code.size()) return std::nullopt;
    int64_t op = code[i], n = code[i + 1];
    if (op < kTranspose || op > kSlice || n < 0 || i + 2 + static_cast<size_t>(n) > code.size()) return std::nullopt;
    steps.push_back({static_cast<ViewOp>(op), std::vector<int64_t>(code.begin() + static_cast<int64_t>(i) + 2,
                                                                    code.begin() + static_cast<int64_t>(i) + 2 + n)});
    i += 2 + static_cast<size_t>(n);
  }
  return steps;
}

inline void encode_step(std::vector<int64_t>& code, ViewOp op, const std::vector<int64_t>& args) {
  code.push_back(op);
  code.push_back(static_cast<int64_t>(args.size()));
  code.insert(code.end(), args.begin(), args.end());
}

inline int64_t norm_axis(int64_t a, int64_t rank) { return a < 0 ? a + rank : a; }

/// Resolves a reshape's -1 dim where the other dims are not all known numbers: (input dims,
/// target with the -1 at `infer`) -> the dim (inference's symbolic dims; -1 = unknown).
using InferDimFn =
    std::function<int64_t(const std::vector<int64_t>& in, const std::vector<int64_t>& out, size_t infer)>;

/// Dims after one step (sizes only; -1 = unknown). Errors name the step.
inline Status apply_step_dims(const ViewStep& s, std::vector<int64_t>& d,
                              const std::optional<std::vector<int64_t>>& shape, const InferDimFn* infer_dim = nullptr) {
  auto rank = static_cast<int64_t>(d.size());
  switch (s.op) {
    case kTranspose: {
      if (static_cast<int64_t>(s.args.size()) != rank) return Status(ErrorCode::kInvalidModel, "view: transpose rank");
      std::vector<int64_t> out;
      std::vector<bool> seen(d.size(), false);
      for (int64_t p : s.args) {
        if (p < 0 || p >= rank || seen[static_cast<size_t>(p)])
          return Status(ErrorCode::kInvalidModel, "view: transpose perm is not a permutation");
        seen[static_cast<size_t>(p)] = true;
        out.push_back(d[static_cast<size_t>(p)]);
      }
      d = out;
      return Status();
    }
    case kReshape: {
      if (!shape) return Status(ErrorCode::kUnsupported, "view: reshape target unknown");
      bool allowzero = s.args.size() > 1 && s.args[1] != 0;
      std::vector<int64_t> out = *shape;
      int64_t known = 1, infer = -1;
      bool unknown = false;
      for (int64_t x : d) unknown = unknown || x < 0;
      for (size_t i = 0; i < out.size(); ++i) {
        if (out[i] == 0 && !allowzero) {
          if (i >= d.size()) return Status(ErrorCode::kInvalidModel, "view: reshape copies a missing dim");
          out[i] = d[i];
        }
        if (out[i] == -1) {
          if (infer >= 0) return Status(ErrorCode::kInvalidModel, "view: reshape has two -1 dims");
          infer = static_cast<int64_t>(i);
        } else if (out[i] < 0) {
          unknown = true;
        } else {
          known *= out[i];
        }
      }
      if (infer >= 0) {
        if (unknown) {
          out[static_cast<size_t>(infer)] = infer_dim ? (*infer_dim)(d, out, static_cast<size_t>(infer)) : -1;
        } else {
          int64_t total = 1;
          for (int64_t x : d) total *= x;
          if (known == 0 || total % known) return Status(ErrorCode::kInvalidModel, "view: reshape volume");
          out[static_cast<size_t>(infer)] = total / known;
        }
      }
      d = out;
      return Status();
    }
    case kSqueeze: {
      std::vector<bool> drop(d.size(), false);
      for (int64_t a : s.args) {
        int64_t x = norm_axis(a, rank);
        if (x < 0 || x >= rank) return Status(ErrorCode::kInvalidModel, "view: squeeze axis");
        drop[static_cast<size_t>(x)] = true;
      }
      std::vector<int64_t> out;
      for (size_t i = 0; i < d.size(); ++i)
        if (!drop[i]) out.push_back(d[i]);
      d = out;
      return Status();
    }
    case kUnsqueeze: {
      int64_t out_rank = rank + static_cast<int64_t>(s.args.size());
      std::vector<bool> ins(static_cast<size_t>(out_rank), false);
      for (int64_t a : s.args) {
        int64_t x = norm_axis(a, out_rank);
        if (x < 0 || x >= out_rank) return Status(ErrorCode::kInvalidModel, "view: unsqueeze axis");
        ins[static_cast<size_t>(x)] = true;
      }
      std::vector<int64_t> out;
      size_t k = 0;
      for (int64_t i = 0; i < out_rank; ++i) out.push_back(ins[static_cast<size_t>(i)] ? 1 : d[k++]);
      d = out;
      return Status();
    }
    case kGather: {
      int64_t x = s.args.empty() ? -1 : norm_axis(s.args[0], rank);
      if (x < 0 || x >= rank) return Status(ErrorCode::kInvalidModel, "view: gather axis");
      d.erase(d.begin() + x);
      return Status();
    }
    case kSlice: {
      if (s.args.size() != 4) return Status(ErrorCode::kInvalidModel, "view: slice args");
      int64_t x = norm_axis(s.args[0], rank);
      if (x < 0 || x >= rank) return Status(ErrorCode::kInvalidModel, "view: slice axis");
      int64_t n = d[static_cast<size_t>(x)];
      if (n < 0) return Status();
      int64_t start = s.args[1], end = s.args[2], step = s.args[3];
      if (step <= 0) return Status(ErrorCode::kUnsupported, "view: slice step must be positive");
      if (start < 0) start += n;
      if (end < 0) end += n;
      start = std::min(std::max<int64_t>(start, 0), n);
      end = std::min(std::max<int64_t>(end, 0), n);
      d[static_cast<size_t>(x)] = end > start ? (end - start + step - 1) / step : 0;
      return Status();
    }
  }
  return Status(ErrorCode::kInvalidModel, "view: unknown step");
}

struct Atom {
  int64_t size, stride;
};
using AxisAtoms = std::vector<Atom>;  // outer first; empty = size 1

struct Layout {
  int64_t offset = 0;
  std::vector<AxisAtoms> dims;
};

inline Layout contiguous_layout(const std::vector<int64_t>& d) {
  Layout l;
  l.dims.resize(d.size());
  int64_t s = 1;
  for (size_t i = d.size(); i-- > 0;) {
    if (d[i] != 1) l.dims[i] = {{d[i], s}};
    s *= d[i];
  }
  return l;
}

inline int64_t axis_size(const AxisAtoms& a) {
  int64_t n = 1;
  for (const Atom& t : a) n *= t.size;
  return n;
}

/// Offset of index i along an axis made of atoms.
inline int64_t axis_offset(const AxisAtoms& a, int64_t i) {
  int64_t off = 0;
  for (size_t k = a.size(); k-- > 0;) {
    off += (i % a[k].size) * a[k].stride;
    i /= a[k].size;
  }
  return off;
}

/// Regroups a layout into dims `to` (row-major order kept); false when an atom would
/// have to split unevenly.
inline bool reshape_layout(Layout& l, const std::vector<int64_t>& to) {
  std::vector<Atom> flat;
  for (auto& d : l.dims)
    for (const Atom& a : d)
      if (a.size != 1) flat.push_back(a);
  std::vector<AxisAtoms> out(to.size());
  size_t k = 0;
  for (size_t i = 0; i < to.size(); ++i) {
    int64_t need = to[i];
    if (need < 0) return false;
    while (need > 1) {
      if (k >= flat.size()) return false;
      Atom& a = flat[k];
      if (need % a.size == 0) {
        out[i].push_back(a);
        need /= a.size;
        ++k;
      } else if (a.size % need == 0) {
        out[i].push_back({need, a.stride * (a.size / need)});
        a.size /= need;
        need = 1;
      } else {
        return false;
      }
    }
  }
  if (k != flat.size()) return false;
  l.dims = std::move(out);
  return true;
}

/// Merges atoms that are contiguous with each other (outer.stride == inner.size * inner.stride).
inline void coalesce(AxisAtoms& a) {
  AxisAtoms out;
  for (const Atom& t : a) {
    if (t.size == 1) continue;
    if (!out.empty() && out.back().stride == t.size * t.stride) {
      out.back().size *= t.size;
      out.back().stride = t.stride;
    } else {
      out.push_back(t);
    }
  }
  a = std::move(out);
}

/// Applies one step to a layout (the forward direction: the step's output viewed in
/// the base buffer). `dims` are the layout's current sizes, updated too.
inline Status apply_step_layout(const ViewStep& s, Layout& l, std::vector<int64_t>& dims,
                                const std::optional<std::vector<int64_t>>& shape) {
  std::vector<int64_t> before = dims;
  KILN_RETURN_IF_ERROR(apply_step_dims(s, dims, shape));
  auto rank = static_cast<int64_t>(before.size());
  switch (s.op) {
    case kTranspose: {
      std::vector<AxisAtoms> out;
      for (int64_t p : s.args) out.push_back(l.dims[static_cast<size_t>(p)]);
      l.dims = std::move(out);
      return Status();
    }
    case kReshape:
      if (!reshape_layout(l, dims))
        return Status(ErrorCode::kUnsupported, "view: reshape to " + dims_to_string(dims) + " is not a strided view");
      return Status();
    case kSqueeze: {
      std::vector<bool> drop(l.dims.size(), false);
      for (int64_t a : s.args) drop[static_cast<size_t>(norm_axis(a, rank))] = true;
      std::vector<AxisAtoms> out;
      for (size_t i = 0; i < l.dims.size(); ++i)
        if (!drop[i]) out.push_back(l.dims[i]);
      l.dims = std::move(out);
      return Status();
    }
    case kUnsqueeze: {
      int64_t out_rank = rank + static_cast<int64_t>(s.args.size());
      std::vector<bool> ins(static_cast<size_t>(out_rank), false);
      for (int64_t a : s.args) ins[static_cast<size_t>(norm_axis(a, out_rank))] = true;
      std::vector<AxisAtoms> out;
      size_t k = 0;
      for (int64_t i = 0; i < out_rank; ++i) out.push_back(ins[static_cast<size_t>(i)] ? AxisAtoms{} : l.dims[k++]);
      l.dims = std::move(out);
      return Status();
    }
    case kGather: {
      int64_t x = norm_axis(s.args[0], rank);
      int64_t n = before[static_cast<size_t>(x)];
      int64_t idx = s.args.size() > 1 ? s.args[1] : 0;
      if (idx < 0) idx += n;
      if (idx < 0 || idx >= n) return Status(ErrorCode::kInvalidArgument, "view: gather index out of range");
      l.offset += axis_offset(l.dims[static_cast<size_t>(x)], idx);
      l.dims.erase(l.dims.begin() + x);
      return Status();
    }
    case kSlice: {
      int64_t x = norm_axis(s.args[0], rank);
      int64_t n = before[static_cast<size_t>(x)];
      AxisAtoms& a = l.dims[static_cast<size_t>(x)];
      coalesce(a);
      int64_t count = dims[static_cast<size_t>(x)];
      if (count == 0) return Status();
      int64_t start = s.args[1];
      if (start < 0) start += n;
      start = std::min(std::max<int64_t>(start, 0), n);
      if (a.size() > 1) return Status(ErrorCode::kUnsupported, "view: slice of a non-strided axis");
      int64_t stride = a.empty() ? 0 : a[0].stride;
      l.offset += start * stride;
      a = count == 1 ? AxisAtoms{} : AxisAtoms{{count, stride * s.args[3]}};
      return Status();
    }
  }
  return Status(ErrorCode::kInvalidModel, "view: unknown step");
}

}  // namespace kiln::ops::attn

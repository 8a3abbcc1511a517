// Test helpers for the data-movement op families: small tensors, symbolic
// inference calls, and element access by coordinates.
#pragma once

#include <string>
#include <vector>

#include "harness/op_harness.h"
#include "ops/common.h"

namespace kiln::test {

/// 1-D int64 tensor.
inline Tensor ints(const std::vector<int64_t>& v) {
  Tensor t = Tensor::empty(DataType::kInt64, {static_cast<int64_t>(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.data_as<int64_t>()[i] = v[i];
  return t;
}

/// Scalar of a dtype.
inline Tensor scalar(DataType dt, double v) {
  Tensor t = Tensor::empty(dt, {});
  t.set_from_double(0, v);
  return t;
}

/// Tensor of a dtype and dims from values.
inline Tensor tensor_of(DataType dt, Dims dims, const std::vector<double>& v) {
  Tensor t = Tensor::empty(dt, std::move(dims));
  for (int64_t i = 0; i < t.numel(); ++i) t.set_from_double(i, v[static_cast<size_t>(i)]);
  return t;
}

inline ops::TensorType tt(DataType dt, Shape s) { return ops::TensorType{dt, std::move(s)}; }
inline ops::TensorType tt_unranked(DataType dt) { return ops::TensorType{dt, std::nullopt}; }
inline Dim sym(const std::string& n) { return Dim::symbol(n); }

/// Runs the op's inference on the case's node with the given input types and values.
inline Result<std::vector<ops::TensorType>> infer(OpCase& c, const std::vector<ops::TensorType>& types,
                                                  const std::vector<const Tensor*>& values = {}) {
  std::vector<const Tensor*> v = values;
  v.resize(types.size(), nullptr);
  return ops::infer_node(c.node(), types, v);
}

/// "[batch,12]" or "unranked".
inline std::string shape_str(const ops::TensorType& t) { return t.shape ? shape_to_string(*t.shape) : "unranked"; }

/// Row-major flat offset of a coordinate.
inline int64_t offset_of(const Dims& dims, const std::vector<int64_t>& idx) {
  int64_t o = 0;
  for (size_t d = 0; d < dims.size(); ++d) o = o * dims[d] + idx[d];
  return o;
}

/// Coordinate of a flat offset.
inline std::vector<int64_t> coords_of(const Dims& dims, int64_t flat) {
  std::vector<int64_t> idx(dims.size());
  for (size_t d = dims.size(); d-- > 0;) {
    idx[d] = dims[d] ? flat % dims[d] : 0;
    flat = dims[d] ? flat / dims[d] : 0;
  }
  return idx;
}

/// Builds the expected tensor by calling f(coords) -> value for each output element.
template <typename F>
Tensor expected_by_coords(DataType dt, const Dims& dims, F f) {
  Tensor t = Tensor::empty(dt, dims);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_from_double(i, f(coords_of(dims, i)));
  return t;
}

/// Element at a coordinate as double.
inline double at(const Tensor& t, const std::vector<int64_t>& idx) { return t.get_as_double(offset_of(t.dims(), idx)); }

/// Asserts a run failed, with a message that names the node.
inline ::testing::AssertionResult fails_naming_node(const Result<std::vector<Tensor>>& r) {
  if (r.ok()) return ::testing::AssertionFailure() << "expected an error";
  if (r.status().message().find("case_") == std::string::npos)
    return ::testing::AssertionFailure() << "error does not name the node: " << r.status().to_string();
  return ::testing::AssertionSuccess();
}

}  // namespace kiln::test

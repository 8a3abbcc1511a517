// Test helpers for the elementwise families: an independent broadcasting
// oracle (index arithmetic, not the kernels' MultiIndex) and small builders.
#pragma once

#include <cmath>
#include <functional>
#include <vector>

#include "backends/cuda/device.h"
#include "harness/op_harness.h"
#include "ops/common.h"

namespace kiln::test {

/// Flat index into a tensor of dims `in` read at flat position `i` of the broadcast `out`.
inline int64_t broadcast_source(const Dims& in, const Dims& out, int64_t i) {
  int64_t src = 0, in_stride = 1;
  size_t off = out.size() - in.size();
  for (int64_t d = static_cast<int64_t>(out.size()) - 1; d >= 0; --d) {
    int64_t coord = i % out[d];
    i /= out[d];
    if (d >= static_cast<int64_t>(off)) {
      int64_t n = in[d - off];
      if (n != 1) src += coord * in_stride;
      in_stride *= n;
    }
  }
  return src;
}

/// Expected output of an elementwise op: f over the broadcast inputs' values as double.
inline Tensor expected_eltwise(DataType dtype, const Dims& out, const std::vector<Tensor>& ins,
                               const std::function<double(const std::vector<double>&)>& f) {
  Tensor t = Tensor::empty(dtype, out);
  std::vector<double> v(ins.size());
  for (int64_t i = 0; i < t.numel(); ++i) {
    for (size_t k = 0; k < ins.size(); ++k) v[k] = ins[k].get_as_double(broadcast_source(ins[k].dims(), out, i));
    t.set_from_double(i, f(v));
  }
  return t;
}

/// The case's inputs as plain tensors (all present).
inline std::vector<Tensor> case_inputs(OpCase& c) {
  std::vector<Tensor> r;
  for (auto& t : c.inputs()) r.push_back(*t);
  return r;
}

/// A tensor from values.
template <typename T>
Tensor make_tensor(DataType dtype, Dims dims, const std::vector<T>& values) {
  return Tensor::from_vector(dtype, std::move(dims), values);
}

/// Tolerances per dtype for results computed in a wider type and rounded.
inline double rtol_for(DataType t) {
  switch (t) {
    case DataType::kFloat16:
      return 2e-3;
    case DataType::kBFloat16:
      return 1.6e-2;
    case DataType::kFloat32:
      return 2e-6;
    case DataType::kFloat64:
      return 1e-12;
    default:
      return 0;
  }
}

/// Runs `c` with its reference kernel and every fast kernel, checking each against `expected`.
inline void expect_case(OpCase& c, const Tensor& expected, double rtol, double atol) {
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(tensors_close((*out)[0], expected, rtol, atol)) << "ref";
  const ops::OpDef* def = ops::OpRegistry::global().find(c.node().domain, c.node().op_type);
  ASSERT_NE(def, nullptr);
  for (const ops::FastKernel& k : def->fast) {
    auto got = c.run(k.name);
    ASSERT_TRUE(got.ok()) << k.name << ": " << got.status().to_string();
    EXPECT_TRUE(tensors_close((*got)[0], expected, rtol, atol)) << k.name;
  }
}

/// Compares every kernel of `c` with its reference on the case's inputs; when a
/// GPU is present a CUDA kernel must have accepted the case too.
inline void expect_kernels_match(OpCase& c, double rtol, double atol) {
  const ops::OpDef* def = ops::OpRegistry::global().find(c.node().domain, c.node().op_type);
  ASSERT_NE(def, nullptr);
  const int compared = c.expect_all_kernels_match(rtol, atol);
  if (cuda::device_count() > 0) {
    EXPECT_GT(compared, static_cast<int>(def->fast.size())) << "no CUDA kernel applied";
  }
}

}  // namespace kiln::test

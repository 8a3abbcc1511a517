// RNN/GRU/LSTM attributes shared by the reference (rnn.cc) and the CUDA kernels
// (rnn_cuda.cu): the cell kinds, the activation functions and their parsing.
#pragma once

#include <math.h>

#include <string>
#include <vector>

#include "ops/common.h"
#include "ops/host_device.h"

namespace kiln::ops::rnn {

enum class Cell { kRnn, kGru, kLstm };

/// Gates per cell (rows of W and R per hidden unit).
inline int gates_of(Cell c) { return c == Cell::kRnn ? 1 : c == Cell::kGru ? 3 : 4; }
/// Activation functions per direction.
inline int num_funcs(Cell c) { return c == Cell::kRnn ? 1 : c == Cell::kGru ? 2 : 3; }
inline int num_directions(const std::string& dir) { return dir == "bidirectional" ? 2 : 1; }

enum class ActKind : int {
  kTanh,
  kSigmoid,
  kRelu,
  kAffine,
  kLeakyRelu,
  kThresholdedRelu,
  kScaledTanh,
  kHardSigmoid,
  kElu,
  kSoftsign,
  kSoftplus,
};

/// f(x) for activation `k`; F is double in the reference and float on the GPU.
template <class F>
KILN_HOST_DEVICE inline F apply_activation(ActKind k, F alpha, F beta, F x) {
  constexpr bool kF32 = sizeof(F) == sizeof(float);
  auto exp_ = [](F v) -> F {
    if constexpr (kF32)
      return ::expf(v);
    else
      return ::exp(v);
  };
  auto tanh_ = [](F v) -> F {
    if constexpr (kF32)
      return ::tanhf(v);
    else
      return ::tanh(v);
  };
  switch (k) {
    case ActKind::kTanh:
      return tanh_(x);
    case ActKind::kSigmoid:
      return F(1) / (F(1) + exp_(-x));
    case ActKind::kRelu:
      return x > F(0) ? x : F(0);
    case ActKind::kAffine:
      return alpha * x + beta;
    case ActKind::kLeakyRelu:
      return x >= F(0) ? x : alpha * x;
    case ActKind::kThresholdedRelu:
      return x > alpha ? x : F(0);
    case ActKind::kScaledTanh:
      return alpha * tanh_(beta * x);
    case ActKind::kHardSigmoid: {
      F v = alpha * x + beta;
      return v < F(0) ? F(0) : v > F(1) ? F(1) : v;
    }
    case ActKind::kElu:
      return x >= F(0) ? x : alpha * (exp_(x) - F(1));
    case ActKind::kSoftsign:
      return x / (F(1) + (x < F(0) ? -x : x));
    case ActKind::kSoftplus: {
      // log(1 + e^x), written so that large x does not overflow.
      F ax = x < F(0) ? -x : x;
      F l;
      if constexpr (kF32)
        l = ::log1pf(::expf(-ax));
      else
        l = ::log1p(::exp(-ax));
      return (x > F(0) ? x : F(0)) + l;
    }
  }
  return x;
}

struct Activation {
  ActKind kind = ActKind::kTanh;
  double alpha = 0, beta = 0;
  double operator()(double x) const { return apply_activation<double>(kind, alpha, beta, x); }
};

/// Activations for every direction (num_funcs(cell) each, direction-major).
/// Explicit alpha/beta values are index-aligned with the activations list when
/// the lengths match, otherwise consumed in order by the functions that take them.
Result<std::vector<Activation>> parse_activations(const ir::Node& node, Cell cell, int dirs);

}  // namespace kiln::ops::rnn

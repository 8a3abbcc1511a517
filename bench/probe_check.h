// CK(call): the standalone GPU probes' check (lt_enumerate.cc, lt_outer_vec.cc, cudnn_knobs.cc): a
// CUDA / cuBLASLt / cuDNN call returning nonzero prints where and what, and exits 1.
#pragma once

#include <cstdio>
#include <cstdlib>

#define CK(x)                                                                                       \
  do {                                                                                              \
    auto e_ = (x);                                                                                  \
    if (e_ != 0) {                                                                                  \
      std::fprintf(stderr, "%s:%d: %s failed: %d\n", __FILE__, __LINE__, #x, static_cast<int>(e_)); \
      std::exit(1);                                                                                 \
    }                                                                                               \
  } while (0)

// KILN_HOST_DEVICE marks small scalar rules that the reference kernels (C++) and
// the CUDA kernels (nvcc) share, so each rule is written once.
#pragma once

#ifdef __CUDACC__
#define KILN_HOST_DEVICE __host__ __device__
#else
#define KILN_HOST_DEVICE
#endif

// What the power-cap probes share (lt_mlp_chunk.cu, cutlass_fold_probe.cu): NVML's energy counter,
// a CUDA graph replayed for a while with its time and energy added up, and their fp16 test data.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <chrono>

#include "probe_check.h"

// NVML's total-energy counter (mJ since the driver loaded), through dlopen: no nvml.h needed.
struct Energy {
  using Init = int (*)();
  using Handle = int (*)(unsigned, void**);
  using Total = int (*)(void*, unsigned long long*);
  Total total = nullptr;
  void* dev = nullptr;
  Energy() {
    void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!lib) return;
    auto init = reinterpret_cast<Init>(dlsym(lib, "nvmlInit_v2"));
    auto handle = reinterpret_cast<Handle>(dlsym(lib, "nvmlDeviceGetHandleByIndex_v2"));
    total = reinterpret_cast<Total>(dlsym(lib, "nvmlDeviceGetTotalEnergyConsumption"));
    if (!init || !handle || !total || init() != 0 || handle(0, &dev) != 0) total = nullptr;
  }
  // mJ, or -1 when NVML is not there.
  double mj() const {
    unsigned long long v = 0;
    return total && total(dev, &v) == 0 ? double(v) : -1.0;
  }
};

// One mode's recorded turns: GPU ms, graph replays and mJ in all (mj < 0: no NVML).
struct Turns {
  double ms = 0, runs = 0, mj = 0;
};

// Replays `exec` on `s`, four at a time, for at least `secs`; adds the turn to *t (null: a warm-up).
inline void replay_for(cudaGraphExec_t exec, cudaStream_t s, double secs, const Energy& energy, Turns* t) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  const auto start = std::chrono::steady_clock::now();
  const double mj0 = energy.mj();
  int runs = 0;
  CK(cudaEventRecord(e0, s));
  do {
    for (int r = 0; r < 4; ++r) CK(cudaGraphLaunch(exec, s));
    runs += 4;
    CK(cudaStreamSynchronize(s));
  } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < secs);
  CK(cudaEventRecord(e1, s));
  CK(cudaEventSynchronize(e1));
  float ms = 0;
  cudaEventElapsedTime(&ms, e0, e1);
  const double mj1 = energy.mj();
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  if (t) t->ms += ms, t->runs += runs, t->mj += mj0 >= 0 ? mj1 - mj0 : -1e30;
}

// p[i] = offset + scale * u_i, u_i uniform in [-1, 1) from a hash of i and seed.
__global__ void fill_uniform(__half* p, size_t n, unsigned seed, float scale, float offset) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    unsigned h = unsigned(i) * 2654435761u ^ seed;
    h ^= h >> 13, h *= 0x5bd1e995u, h ^= h >> 15;
    p[i] = __float2half(offset + scale * (float(h & 0xffffff) / 16777216.f * 2.f - 1.f));
  }
}

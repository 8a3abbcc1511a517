#include "backends/cpu/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "backends/cpu/thread_pool.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define KILN_GEMM_X86 1
#endif

namespace kiln::cpu {
namespace {

// C tile (mr x nr, full size) = acc + beta * C; beta == 0 never reads C (it may hold NaN).
using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float beta);

struct KernelInfo {
  const char* name;
  MicroKernel fn;
  int mr, nr;
  int64_t kc, mc, nc;
};

template <int MR, int NR>
void kernel_generic(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float beta) {
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int r = 0; r < MR; ++r) {
      float av = a[r];
      for (int j = 0; j < NR; ++j) acc[r][j] += av * b[j];
    }
    a += MR;
    b += NR;
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) {
      float* cp = c + r * ldc + j;
      *cp = beta == 0.f ? acc[r][j] : acc[r][j] + beta * *cp;
    }
}

#ifdef KILN_GEMM_X86
__attribute__((target("avx2,fma"))) void kernel_avx2_6x16(int64_t kc, const float* a, const float* b, float* c,
                                                          int64_t ldc, float beta) {
  __m256 acc[6][2];
#pragma GCC unroll 6
  for (int r = 0; r < 6; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
    for (int r = 0; r < 6; ++r) {
      __m256 av = _mm256_broadcast_ss(a + r);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
    a += 6;
    b += 16;
  }
  __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
  for (int r = 0; r < 6; ++r) {
    float* cp = c + r * ldc;
    if (beta != 0.f) {
      acc[r][0] = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cp), acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cp + 8), acc[r][1]);
    }
    _mm256_storeu_ps(cp, acc[r][0]);
    _mm256_storeu_ps(cp + 8, acc[r][1]);
  }
}

__attribute__((target("avx512f"))) void kernel_avx512_12x32(int64_t kc, const float* a, const float* b, float* c,
                                                            int64_t ldc, float beta) {
  __m512 acc[12][2];
#pragma GCC unroll 12
  for (int r = 0; r < 12; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
    for (int r = 0; r < 12; ++r) {
      __m512 av = _mm512_set1_ps(a[r]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
    a += 12;
    b += 32;
  }
  __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
  for (int r = 0; r < 12; ++r) {
    float* cp = c + r * ldc;
    if (beta != 0.f) {
      acc[r][0] = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cp), acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cp + 16), acc[r][1]);
    }
    _mm512_storeu_ps(cp, acc[r][0]);
    _mm512_storeu_ps(cp + 16, acc[r][1]);
  }
}
#endif

// The micro-kernel called `name` if this CPU runs it, else nullptr.
const KernelInfo* find_kernel(const std::string& name) {
#ifdef KILN_GEMM_X86
  __builtin_cpu_init();
  static const KernelInfo avx512{"avx512", kernel_avx512_12x32, 12, 32, 256, 96, 4096};
  static const KernelInfo avx2{"avx2", kernel_avx2_6x16, 6, 16, 256, 96, 4096};
  if (name == "avx512" && __builtin_cpu_supports("avx512f")) return &avx512;
  if (name == "avx2" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &avx2;
#endif
  static const KernelInfo generic{"generic", kernel_generic<4, 8>, 4, 8, 256, 64, 4096};
  if (name == "generic") return &generic;
  return nullptr;
}

// The best kernel this CPU runs; KILN_GEMM_KERNEL names another (for testing).
const KernelInfo& select_kernel() {
  static const KernelInfo* info = [] {
    if (const char* force = std::getenv("KILN_GEMM_KERNEL"))
      if (const KernelInfo* k = find_kernel(force)) return k;
    for (const char* name : {"avx512", "avx2", "generic"})
      if (const KernelInfo* k = find_kernel(name)) return k;
    return find_kernel("generic");
  }();
  return *info;
}

// Grow-only scratch per calling thread (the packed panels of one sgemm call).
float* scratch(size_t floats) {
  struct Buf {
    float* p = nullptr;
    size_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf buf;
  if (buf.n < floats) {
    std::free(buf.p);
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    buf.p = static_cast<float*>(std::aligned_alloc(64, bytes));
    buf.n = buf.p ? floats : 0;
  }
  return buf.p;
}

// Packs rows [i0, i0+mr) x cols [p0, p0+kc) of alpha*op(A) into an MR-interleaved strip.
void pack_a_strip(const float* a, int64_t lda, bool trans, int64_t i0, int64_t mr, int64_t p0, int64_t kc, int MR,
                  float alpha, float* dst) {
  for (int64_t p = 0; p < kc; ++p) {
    float* d = dst + p * MR;
    int64_t r = 0;
    if (trans) {
      const float* src = a + (p0 + p) * lda + i0;
      for (; r < mr; ++r) d[r] = alpha * src[r];
    } else {
      const float* src = a + i0 * lda + p0 + p;
      for (; r < mr; ++r) d[r] = alpha * src[r * lda];
    }
    for (; r < MR; ++r) d[r] = 0.f;
  }
}

// Packs rows [p0, p0+kc) x cols [j0, j0+nr) of op(B) into an NR-interleaved strip.
void pack_b_strip(const float* b, int64_t ldb, bool trans, int64_t p0, int64_t kc, int64_t j0, int64_t nr, int NR,
                  float* dst) {
  if (!trans) {
    for (int64_t p = 0; p < kc; ++p) {
      const float* src = b + (p0 + p) * ldb + j0;
      float* d = dst + p * NR;
      std::memcpy(d, src, sizeof(float) * nr);
      for (int64_t j = nr; j < NR; ++j) d[j] = 0.f;
    }
  } else {
    for (int64_t j = 0; j < NR; ++j) {
      if (j < nr) {
        const float* src = b + (j0 + j) * ldb + p0;
        for (int64_t p = 0; p < kc; ++p) dst[p * NR + j] = src[p];
      } else {
        for (int64_t p = 0; p < kc; ++p) dst[p * NR + j] = 0.f;
      }
    }
  }
}

void scale_c(int64_t m, int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    if (beta == 0.f) std::fill(row, row + n, 0.f);
    else
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
  }
}

// Straight loops for tiny products, where packing would cost more than it saves.
void sgemm_small(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float s = 0.f;
      for (int64_t p = 0; p < k; ++p) s += (ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
      float* cp = c + i * ldc + j;
      *cp = beta == 0.f ? alpha * s : alpha * s + beta * *cp;
    }
}

void sgemm_impl(const KernelInfo& kern, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                int max_threads) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.f) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  if (m * n * k <= 8 * 1024) {
    sgemm_small(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const int MR = kern.mr, NR = kern.nr;
  const int64_t KC = std::min<int64_t>(kern.kc, k);
  const int64_t NC = std::min<int64_t>(kern.nc, (n + NR - 1) / NR * NR);
  const int64_t m_strips = (m + MR - 1) / MR;
  const int64_t mp = m_strips * MR;
  float* packed_a = scratch(static_cast<size_t>(mp * KC + NC * KC));
  if (!packed_a) {  // out of memory: still give the right answer
    sgemm_small(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  float* packed_b = packed_a + mp * KC;
  int threads = max_threads > 0 ? std::min(max_threads, hardware_threads()) : hardware_threads();

  for (int64_t jc = 0; jc < n; jc += NC) {
    const int64_t nc = std::min(NC, n - jc);
    const int64_t n_strips = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = std::min(KC, k - pc);
      const float beta_eff = pc == 0 ? beta : 1.f;
      parallel_for(m_strips, [&](int64_t s0, int64_t s1) {
        for (int64_t s = s0; s < s1; ++s)
          pack_a_strip(a, lda, trans_a, s * MR, std::min<int64_t>(MR, m - s * MR), pc, kc, MR, alpha,
                       packed_a + s * MR * kc);
      }, threads, 4);
      parallel_for(n_strips, [&](int64_t s0, int64_t s1) {
        for (int64_t s = s0; s < s1; ++s)
          pack_b_strip(b, ldb, trans_b, pc, kc, jc + s * NR, std::min<int64_t>(NR, nc - s * NR), NR,
                       packed_b + s * NR * kc);
      }, threads, 4);
      // Tasks: blocks of MC rows x a run of NR strips; the A block stays in L2,
      // each B strip in L1 while the A strips stream past it.
      const int64_t mc_strips = std::max<int64_t>(1, kern.mc / MR);
      const int64_t m_blocks = (m_strips + mc_strips - 1) / mc_strips;
      int64_t nb_strips = std::max<int64_t>(1, 256 / NR);
      while (nb_strips > 1 && m_blocks * ((n_strips + nb_strips - 1) / nb_strips) < int64_t{threads} * 4)
        nb_strips = (nb_strips + 1) / 2;
      const int64_t n_blocks = (n_strips + nb_strips - 1) / nb_strips;
      parallel_for(m_blocks * n_blocks, [&](int64_t t0, int64_t t1) {
        alignas(64) float tmp[32 * 32];
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t mb = t / n_blocks, nb = t % n_blocks;
          const int64_t js_end = std::min(n_strips, (nb + 1) * nb_strips);
          const int64_t is_end = std::min(m_strips, (mb + 1) * mc_strips);
          for (int64_t js = nb * nb_strips; js < js_end; ++js) {
            const int64_t j = jc + js * NR;
            const int64_t nr = std::min<int64_t>(NR, n - j);
            const float* bp = packed_b + js * NR * kc;
            for (int64_t is = mb * mc_strips; is < is_end; ++is) {
              const int64_t i = is * MR;
              const int64_t mr = std::min<int64_t>(MR, m - i);
              const float* ap = packed_a + is * MR * kc;
              float* cp = c + i * ldc + j;
              if (mr == MR && nr == NR) {
                kern.fn(kc, ap, bp, cp, ldc, beta_eff);
                continue;
              }
              kern.fn(kc, ap, bp, tmp, NR, 0.f);
              for (int64_t r = 0; r < mr; ++r)
                for (int64_t q = 0; q < nr; ++q) {
                  float* o = cp + r * ldc + q;
                  *o = beta_eff == 0.f ? tmp[r * NR + q] : tmp[r * NR + q] + beta_eff * *o;
                }
            }
          }
        }
      }, threads, 1);
    }
  }
}

}  // namespace

const char* sgemm_kernel_name() { return select_kernel().name; }

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc, int max_threads) {
  sgemm_impl(select_kernel(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, max_threads);
}

bool sgemm_with_kernel(const char* kernel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                       int max_threads) {
  const KernelInfo* kern = find_kernel(kernel);
  if (!kern) return false;
  sgemm_impl(*kern, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, max_threads);
  return true;
}

}  // namespace kiln::cpu

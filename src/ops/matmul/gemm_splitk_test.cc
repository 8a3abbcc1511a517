// The split-K GEMM's planning (gemm_splitk.h), on the CPU: which products get its
// tactics, and that every grid it plans covers the output and K with no idle CTA.
// The kernel itself is checked against a naive product in matmul_test.cc (GPU).
#include "ops/matmul/gemm_splitk.h"

#include <gtest/gtest.h>

namespace kiln::ops::matmul::splitk {
namespace {

alignas(16) unsigned char g_buf[64];

Problem problem(int64_t m, int64_t n, int64_t k, DataType t = DataType::kFloat16) {
  Problem p;
  p.dtype = t;
  p.m = m, p.n = n, p.k = k;
  p.a = p.b = p.y = g_buf;
  return p;
}

TEST(SplitKGemm, OffersFewRowsOnly) {
  EXPECT_EQ(candidates(problem(128, 768, 3072)),
            (std::vector<int64_t>{tactic_id(64, 1), tactic_id(64, 2), tactic_id(128, 1)}));
  EXPECT_EQ(candidates(problem(16, 4096, 4096, DataType::kBFloat16)),
            (std::vector<int64_t>{tactic_id(32, 1), tactic_id(32, 2)}));
  EXPECT_EQ(candidates(problem(64, 64, 64)), (std::vector<int64_t>{tactic_id(64, 1), tactic_id(64, 2)}));
  EXPECT_TRUE(candidates(problem(kMaxRows + 1, 768, 768)).empty()) << "large products stay with cuBLASLt";
  EXPECT_TRUE(candidates(problem(128, 768, 768, DataType::kFloat32)).empty()) << "16-bit floats only";
  EXPECT_TRUE(candidates(problem(128, 772, 768)).empty()) << "n must be a multiple of 8";
  EXPECT_TRUE(candidates(problem(128, 768, 764)).empty()) << "k must be a multiple of 8";
  Problem odd = problem(128, 768, 768);
  odd.bias = g_buf + 8;
  EXPECT_TRUE(candidates(odd).empty()) << "every buffer 16-byte aligned";
  for (int64_t id : candidates(problem(200, 72, 776))) {
    EXPECT_TRUE(is_tactic(id));
    EXPECT_FALSE(is_tactic(id - kTacticBase)) << "IDs stay clear of cuBLASLt's and cuDNN's";
  }
}

TEST(SplitKGemm, BertFc2AtBatchOneFillsTheGpu) {
  // 128 x 768 x 3072 on 132 SMs: 2 x 12 tiles of 64 x 64, K in 5 shares of 10 blocks.
  const Launch l = plan(problem(128, 768, 3072), tactic_id(64, 1), 132);
  EXPECT_EQ(l.m_tiles, 2);
  EXPECT_EQ(l.n_tiles, 12);
  EXPECT_EQ(l.split, 5);
  EXPECT_EQ(l.kps, 10);
  const Launch two = plan(problem(128, 768, 3072), tactic_id(64, 2), 132);
  EXPECT_EQ(two.split, 8) << "a cluster holds at most 8 CTAs";
  EXPECT_EQ(two.kps, 6);
}

TEST(SplitKGemm, EveryPlanCoversTheOutputAndK) {
  for (int64_t m : {1, 7, 32, 33, 64, 65, 128, 197, 256})
    for (int64_t n : {8, 72, 768, 2304, 3072})
      for (int64_t k : {8, 64, 72, 776, 3072})
        for (int sms : {1, 78, 132})
          for (int64_t id : candidates(problem(m, n, k))) {
            SCOPED_TRACE(std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) + " sms " +
                         std::to_string(sms) + " tactic " + std::to_string(id - kTacticBase));
            const Launch l = plan(problem(m, n, k), id, sms);
            const int64_t kb = (k + kBK - 1) / kBK;
            EXPECT_GE(l.m_tiles * l.bm, m);
            EXPECT_LT((l.m_tiles - 1) * l.bm, m);
            EXPECT_GE(l.n_tiles * kBN, n);
            EXPECT_GE(l.split, 1);
            EXPECT_LE(l.split, kMaxSplit);
            EXPECT_GE(l.split * l.kps, kb) << "K covered";
            EXPECT_LT((l.split - 1) * l.kps, kb) << "the last CTA of a cluster has K blocks";
            const int64_t tiles = l.m_tiles * l.n_tiles;
            EXPECT_LE(tiles * l.split, std::max<int64_t>(tiles, tactic_waves(id) * sms))
                << "no more CTAs than aimed at";
          }
}

}  // namespace
}  // namespace kiln::ops::matmul::splitk

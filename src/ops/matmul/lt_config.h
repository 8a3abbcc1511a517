// cuBLASLt configurations its heuristic does not return, as tactics of cuda.cublaslt.
//
// cublasLtMatmulAlgoGetHeuristic gives up to 8 distinct configurations for a problem; the
// builder times those. An exhaustive walk (bench/lt_enumerate.cc: every algorithm, tile,
// stages, cluster shape, swizzle and custom option cublasLtMatmulAlgoCheck accepts, ~2,300 a
// problem) found faster ones on the H100 for large GEMMs: BERT-base bs128's QKV, fc1 and
// out-projection 8.4%, 4.6% and 3.5% faster than the heuristic's best, ViT-B/16 bs256's 3.9%,
// 4.8% and 1.8% (session 20) -- every time the heuristic's own algorithm with another tile
// (128 x 152, 128 x 168, 128 x 160) and the cluster shape and custom option of one of the
// heuristic's own. So kiln offers, for large problems, each of the heuristic's configurations
// with each tile of kTiles that the library accepts, every configuration's best tile by a wave
// model first, and the builder's timing decides. (Varying only the heuristic's first found
// nothing: its cluster shape and option made every other tile slower; session 20 run 9.)
//
// Tactic ID: kEnumeratedBit | algo << 36 | tile << 24 | stages << 16 | cluster << 10 |
// swizzle << 8 | custom. It holds the whole configuration, so an engine rebuilds it at load
// time; where the library refuses it there (another GPU or version), the heuristic's first
// choice runs. (The heuristic's own configurations keep their hashed IDs, below 2^62.)
#pragma once

#include <cstdint>
#include <string>

namespace kiln::ops::matmul::lt_config {

inline constexpr int64_t kEnumeratedBit = int64_t{1} << 62;

struct Config {
  int algo = 0;
  uint32_t tile = 0, stages = 0, swizzle = 0, custom = 0;
  uint16_t cluster = 0;
};

inline bool is_enumerated(int64_t id) { return id >= kEnumeratedBit && id < kEnumeratedBit + (int64_t{1} << 52); }

/// False where a field does not fit its bits (the configuration is then not offered).
inline bool encode(const Config& c, int64_t& id) {
  if (c.algo < 0 || c.algo >= (1 << 16) || c.tile >= (1u << 12) || c.stages >= (1u << 8) || c.cluster >= (1u << 6) ||
      c.swizzle >= 4u || c.custom >= (1u << 8))
    return false;
  id = kEnumeratedBit | int64_t{c.algo} << 36 | int64_t{c.tile} << 24 | int64_t{c.stages} << 16 |
       int64_t{c.cluster} << 10 | int64_t{c.swizzle} << 8 | int64_t{c.custom};
  return true;
}

inline Config decode(int64_t id) {
  Config c;
  c.algo = static_cast<int>((id >> 36) & 0xffff);
  c.tile = static_cast<uint32_t>((id >> 24) & 0xfff);
  c.stages = static_cast<uint32_t>((id >> 16) & 0xff);
  c.cluster = static_cast<uint16_t>((id >> 10) & 0x3f);
  c.swizzle = static_cast<uint32_t>((id >> 8) & 0x3);
  c.custom = static_cast<uint32_t>(id & 0xff);
  return c;
}

/// The tiles offered (cublasLtMatmulTile_t values, rows x columns of cuBLASLt's column-major
/// D, i.e. kiln's n x m): 128 x 104 .. 128 x 296 (nvjet's non-power-of-two widths) and the
/// square-ish classics.
struct Tile {
  uint32_t id;
  int rows, cols;
};
inline constexpr Tile kTiles[] = {
    {20, 128, 128},  {29, 128, 160},  {32, 128, 192},  {23, 128, 256},  {24, 256, 128},  {402, 128, 104},
    {403, 128, 112}, {404, 128, 120}, {405, 128, 136}, {406, 128, 144}, {407, 128, 152}, {408, 128, 168},
    {409, 128, 176}, {410, 128, 184}, {411, 128, 200}, {412, 128, 208}, {413, 128, 216}, {414, 128, 224},
    {415, 128, 232}, {416, 128, 240}, {417, 128, 248}, {418, 128, 264}, {419, 128, 272}, {420, 128, 280},
    {421, 128, 288}, {422, 128, 296},
};

inline const Tile* tile_of(uint32_t id) {
  for (const Tile& t : kTiles)
    if (t.id == id) return &t;
  return nullptr;
}

/// kiln -v's name of an enumerated tactic.
inline std::string describe(int64_t id) {
  const Config c = decode(id);
  const Tile* t = tile_of(c.tile);
  return "cuBLASLt algo " + std::to_string(c.algo) + ", tile " +
         (t ? std::to_string(t->rows) + "x" + std::to_string(t->cols) : "#" + std::to_string(c.tile)) + ", stages #" +
         std::to_string(c.stages) + ", cluster #" + std::to_string(c.cluster) + ", custom " + std::to_string(c.custom) +
         " (not in the heuristic's list)";
}

/// The wave model that orders the offered tiles (the builder times the first few at the
/// default level): whole rounds of tiles over the SMs times a tile's area, for kiln's m x n
/// output. Lower is better.
inline double wave_cost(const Tile& t, int64_t m, int64_t n, int sms) {
  const int64_t tiles = ((n + t.rows - 1) / t.rows) * ((m + t.cols - 1) / t.cols);
  const int64_t rounds = (tiles + sms - 1) / (sms > 0 ? sms : 1);
  return static_cast<double>(rounds) * t.rows * t.cols;
}

/// Problems offered the enumerated tiles: one matrix (after folding the batch) large enough
/// that a tile's shape decides the waves. (Batch-1 GEMMs gained nothing in session 12's walk.)
/// The caller offers them for FP16 / BF16 only, the dtypes probed and GPU-tested.
inline bool offered(int64_t m, int64_t n, int64_t k, int64_t batch) {
  return batch == 1 && m >= 2048 && n >= 256 && k >= 256;
}

}  // namespace kiln::ops::matmul::lt_config

// CUDA RNN, GRU and LSTM: a host loop over time steps; each step launches a
// tiled gate GEMM (W x_t + R h_{t-1} + biases, both directions at once) and a
// pointwise cell kernel. GRU without linear_before_reset needs (r . h) R_h, so
// its step is GEMM, cell phase 1 (r . h), GEMM, cell phase 2. States and gates
// are FP32 in the workspace; the semantics follow rnn.cc (sequence_lens,
// initial states, clip, activations, layouts, peepholes, input_forget).
#include <string>
#include <vector>

#include "backends/cuda/kernel_util.cuh"
#include "ops/rnn/rnn_attrs.h"

namespace kiln::ops {
namespace {

using rnn::ActKind;
using rnn::Cell;

/// Where a step's rows (one per direction and batch entry) read their time step.
struct StepPos {
  int64_t S = 0, N = 0;
  int64_t step = 0;
  int layout = 0;
  unsigned reverse_mask = 0;   ///< bit d: direction d runs backwards
  const void* lens = nullptr;  ///< sequence_lens on the device, or null (every entry has S steps)
  bool lens64 = false;
};

__device__ __forceinline__ int64_t seq_len(const StepPos& p, int64_t n) {
  if (!p.lens) return p.S;
  int64_t l = p.lens64 ? static_cast<const int64_t*>(p.lens)[n] : static_cast<const int32_t*>(p.lens)[n];
  return l < 0 ? 0 : l > p.S ? p.S : l;  // the reference rejects lengths outside [0, S]
}

/// Time index of entry n in direction d at this step; -1 when the step is past its sequence.
__device__ __forceinline__ int64_t time_of(const StepPos& p, int d, int64_t n) {
  const int64_t len = seq_len(p, n);
  if (p.step >= len) return -1;
  return (p.reverse_mask >> d) & 1u ? len - 1 - p.step : p.step;
}

// ---------------------------------------------------------------- gate GEMM

/// One term of out[d][n][col0 + g] = sum_k A[d][n][k] * Wt[d][row0 + g][k] + bias[d][row0 + g].
struct Segment {
  const void* w = nullptr;  ///< [D, rows_total, K] in T
  int64_t w_dir_stride = 0;
  int64_t K = 0;
  int64_t row0 = 0;
  const void* bias = nullptr;  ///< T, or null; direction d at bias + d * bias_dir_stride
  int64_t bias_dir_stride = 0;
  bool from_x = false;           ///< A = X at the entry's time step; else the FP32 state below
  const float* state = nullptr;  ///< [D, N, K]
};

struct GemmArgs {
  Segment seg[2];
  int num_seg = 0;
  const void* x = nullptr;  ///< X in T (layout 0: [S, N, I]; 1: [N, S, I])
  StepPos pos;
  float* out = nullptr;  ///< [D, N, out_ld]
  int64_t out_ld = 0, col0 = 0, rows = 0;
};

constexpr int kTile = 32;
constexpr int kTileK = 16;
constexpr int kThreads = 16;  // 16 x 16 threads, 2 x 2 outputs each

template <class T>
__global__ void gate_gemm_kernel(GemmArgs a) {
  __shared__ float as[kTileK][kTile + 1];  // [k][n]
  __shared__ float ws[kTileK][kTile + 1];  // [k][g]
  __shared__ int64_t row_off[kTile];       // A row start per n (-1: row unused)
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kThreads + tx;
  const int d = blockIdx.z;
  const int64_t N = a.pos.N;
  const int64_t g0 = static_cast<int64_t>(blockIdx.x) * kTile;
  for (int64_t n0 = static_cast<int64_t>(blockIdx.y) * kTile; n0 < N; n0 += static_cast<int64_t>(gridDim.y) * kTile) {
    float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
    for (int si = 0; si < a.num_seg; ++si) {
      const Segment& s = a.seg[si];
      const T* w = static_cast<const T*>(s.w) + d * s.w_dir_stride + s.row0 * s.K;
      __syncthreads();  // row_off of the previous segment or tile is no longer read
      if (tid < kTile) {
        const int64_t n = n0 + tid;
        int64_t off = -1;
        if (n < N) {
          if (s.from_x) {
            const int64_t t = time_of(a.pos, d, n);
            if (t >= 0) off = a.pos.layout ? (n * a.pos.S + t) * s.K : (t * N + n) * s.K;
          } else {
            off = (d * N + n) * s.K;
          }
        }
        row_off[tid] = off;
      }
      for (int64_t k0 = 0; k0 < s.K; k0 += kTileK) {
        __syncthreads();
        for (int e = tid; e < kTileK * kTile; e += kThreads * kThreads) {
          // Consecutive threads read consecutive k of one row.
          const int r = e / kTileK, kk = e % kTileK;
          const int64_t k = k0 + kk;
          float av = 0.f, wv = 0.f;
          if (k < s.K) {
            const int64_t off = row_off[r];
            if (off >= 0) av = s.from_x ? cuda::to_f(static_cast<const T*>(a.x)[off + k]) : s.state[off + k];
            if (g0 + r < a.rows) wv = cuda::to_f(w[(g0 + r) * s.K + k]);
          }
          as[kk][r] = av;
          ws[kk][r] = wv;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kTileK; ++kk) {
          const float a0 = as[kk][ty], a1 = as[kk][ty + kThreads];
          const float w0 = ws[kk][tx], w1 = ws[kk][tx + kThreads];
          acc[0][0] += a0 * w0;
          acc[0][1] += a0 * w1;
          acc[1][0] += a1 * w0;
          acc[1][1] += a1 * w1;
        }
      }
    }
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int64_t g = g0 + tx + j * kThreads;
      if (g >= a.rows) continue;
      float bias = 0.f;
      for (int si = 0; si < a.num_seg; ++si) {
        const Segment& s = a.seg[si];
        if (s.bias) bias += cuda::to_f(static_cast<const T*>(s.bias)[d * s.bias_dir_stride + s.row0 + g]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int64_t n = n0 + ty + i * kThreads;
        if (n < N) a.out[(d * N + n) * a.out_ld + a.col0 + g] = acc[i][j] + bias;
      }
    }
  }
}

template <class T>
void launch_gemm(const GemmArgs& a, int64_t D, cudaStream_t stream) {
  const int64_t g_tiles = (a.rows + kTile - 1) / kTile, n_tiles = (a.pos.N + kTile - 1) / kTile;
  dim3 grid(static_cast<unsigned>(g_tiles), static_cast<unsigned>(n_tiles < 65535 ? n_tiles : 65535),
            static_cast<unsigned>(D));
  gate_gemm_kernel<T><<<grid, dim3(kThreads, kThreads), 0, stream>>>(a);
}

// ---------------------------------------------------------------- cell

struct Act {
  ActKind kind = ActKind::kTanh;
  float alpha = 0.f, beta = 0.f;
};

struct CellArgs {
  int64_t D = 0, H = 0;
  StepPos pos;
  int phase = 0;  ///< GRU without linear_before_reset: 1 = write r . h, 2 = finish the step
  bool lbr = false, input_forget = false;
  float clip = 0.f;           ///< > 0: gate pre-activations are clamped to [-clip, clip]
  Act f[2][3];                ///< [direction][function]
  const float* gx = nullptr;  ///< [D, N, G*H]: W x + Wb (RNN/LSTM: all gate terms)
  const float* gh = nullptr;  ///< [D, N, G*H]: R h + Rb (GRU only)
  float* h = nullptr;         ///< [D, N, H]
  float* c = nullptr;         ///< [D, N, H] (LSTM)
  float* rh = nullptr;        ///< [D, N, H] (GRU phase 1)
  const void* p = nullptr;    ///< peepholes [D, 3H] in T, or null
  void* y = nullptr;          ///< Y in T, or null
};

__device__ __forceinline__ float act(const Act& a, float x) {
  return rnn::apply_activation<float>(a.kind, a.alpha, a.beta, x);
}

__device__ __forceinline__ float clipped(const CellArgs& a, float v) {
  return a.clip > 0.f ? fminf(fmaxf(v, -a.clip), a.clip) : v;
}

template <Cell C, class T>
__global__ void cell_kernel(CellArgs a, int64_t total) {
  const int64_t H = a.H, N = a.pos.N;
  constexpr int64_t G = C == Cell::kRnn ? 1 : C == Cell::kGru ? 3 : 4;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = idx % H;
    const int64_t dn = idx / H;  // d * N + n
    const int64_t n = dn % N;
    const int d = static_cast<int>(dn / N);
    const int64_t t = time_of(a.pos, d, n);
    if (t < 0) continue;  // past this entry's sequence: the state is kept
    const float* gx = a.gx + dn * G * H;
    const float* gh = a.gh ? a.gh + dn * G * H : nullptr;
    const Act* f = a.f[d];
    const float h_prev = a.h[idx];
    float nh;
    if constexpr (C == Cell::kRnn) {
      nh = act(f[0], clipped(a, gx[j]));
    } else if constexpr (C == Cell::kGru) {
      // Gate order z, r, h.
      const float r = act(f[0], clipped(a, gx[H + j] + gh[H + j]));
      if (a.phase == 1) {
        a.rh[idx] = r * h_prev;
        continue;
      }
      const float z = act(f[0], clipped(a, gx[j] + gh[j]));
      // lbr: r . (R_h h + Rb_h); otherwise gh holds R_h (r . h) + Rb_h from the second GEMM.
      const float hh = a.lbr ? gx[2 * H + j] + r * gh[2 * H + j] : gx[2 * H + j] + gh[2 * H + j];
      const float cand = act(f[1], clipped(a, hh));
      nh = (1.f - z) * cand + z * h_prev;
    } else {
      // Gate order i, o, f, c; peepholes i, o, f.
      float pi = 0.f, po = 0.f, pf = 0.f;
      if (a.p) {
        const T* p = static_cast<const T*>(a.p) + d * 3 * H;
        pi = cuda::to_f(p[j]), po = cuda::to_f(p[H + j]), pf = cuda::to_f(p[2 * H + j]);
      }
      const float c_prev = a.c[idx];
      const float ig = act(f[0], clipped(a, gx[j] + pi * c_prev));
      const float fg = a.input_forget ? 1.f - ig : act(f[0], clipped(a, gx[2 * H + j] + pf * c_prev));
      const float cg = act(f[1], clipped(a, gx[3 * H + j]));
      const float c = fg * c_prev + ig * cg;
      const float og = act(f[0], clipped(a, gx[H + j] + po * c));
      a.c[idx] = c;
      nh = og * act(f[2], c);
    }
    a.h[idx] = nh;
    if (a.y) {
      const int64_t yi = a.pos.layout ? ((n * a.pos.S + t) * a.D + d) * H + j : ((t * a.D + d) * N + n) * H + j;
      static_cast<T*>(a.y)[yi] = cuda::from_f<T>(nh);
    }
  }
}

// ---------------------------------------------------------------- states

/// Copies a [D, N, H] FP32 state from (load) or to (store) a T tensor in the node's layout.
template <class T>
__global__ void state_kernel(float* s, const T* in, T* out, int64_t D, int64_t N, int64_t H, int layout) {
  const int64_t total = D * N * H;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = idx % H, n = (idx / H) % N, d = idx / (N * H);
    const int64_t ti = layout ? (n * D + d) * H + j : idx;
    if (out)
      out[ti] = cuda::from_f<T>(s[idx]);
    else
      s[idx] = in ? cuda::to_f(in[ti]) : 0.f;
  }
}

// ---------------------------------------------------------------- driver

struct Shapes {
  int64_t D, S, N, I, H, G;
  int layout;
};

template <Cell C>
Status rnn_cuda(KernelContext& ctx) {
  const auto& attrs = ctx.attrs();
  const std::string dir = attrs.get_string("direction", "forward");
  Shapes s;
  s.D = rnn::num_directions(dir);
  s.layout = static_cast<int>(attrs.get_int("layout", 0));
  s.G = rnn::gates_of(C);
  const Tensor& X = ctx.input(0);
  const Tensor& W = ctx.input(1);
  const Tensor& R = ctx.input(2);
  if (X.rank() != 3 || W.rank() != 3 || R.rank() != 3) return ctx.error("X, W and R must be 3-D");
  s.S = s.layout ? X.dim(1) : X.dim(0);
  s.N = s.layout ? X.dim(0) : X.dim(1);
  s.I = X.dim(2);
  s.H = R.dim(2);
  const int64_t D = s.D, S = s.S, N = s.N, I = s.I, H = s.H, G = s.G;
  if (attrs.has("hidden_size") && attrs.get_int("hidden_size", 0) != H)
    return ctx.error("hidden_size does not match R");
  if (W.dims() != Dims{D, G * H, I}) return ctx.error("W must be " + dims_to_string({D, G * H, I}));
  if (R.dims() != Dims{D, G * H, H}) return ctx.error("R must be " + dims_to_string({D, G * H, H}));
  const bool has_b = ctx.has_input(3);
  if (has_b && ctx.input(3).dims() != Dims{D, 2 * G * H})
    return ctx.error("B must be " + dims_to_string({D, 2 * G * H}));
  const bool has_lens = ctx.has_input(4);
  if (has_lens && ctx.input(4).dims() != Dims{N}) return ctx.error("sequence_lens must be [batch_size]");
  const Dims state_dims = s.layout ? Dims{N, D, H} : Dims{D, N, H};
  for (int i : {5, 6})
    if (ctx.has_input(i) && (i == 5 || C == Cell::kLstm) && ctx.input(i).dims() != state_dims)
      return ctx.error("initial state must be " + dims_to_string(state_dims));
  const bool has_p = C == Cell::kLstm && ctx.has_input(7);
  if (has_p && ctx.input(7).dims() != Dims{D, 3 * H}) return ctx.error("P must be " + dims_to_string({D, 3 * H}));
  KILN_ASSIGN_OR_RETURN(auto acts, rnn::parse_activations(ctx.node(), C, static_cast<int>(D)));
  const int nf = rnn::num_funcs(C);
  const bool lbr = attrs.get_int("linear_before_reset", 0) != 0;

  if (D * N * H == 0) return Status();  // every output is empty
  // Scratch: h, c, r . h ([D, N, H] each) and gx, gh ([D, N, G*H] each), FP32.
  const int64_t state = D * N * H, gates = D * N * G * H;
  const int64_t floats = 3 * state + 2 * gates;
  const cuda::Env* env = ctx.cuda_env();
  if (static_cast<uint64_t>(floats) * sizeof(float) > env->workspace_bytes)
    return ctx.error("needs " + std::to_string(floats * sizeof(float)) + " bytes of workspace, the engine has " +
                         std::to_string(env->workspace_bytes),
                     ErrorCode::kUnsupported);
  float* ws = static_cast<float*>(env->workspace);
  float* h = ws;
  float* c = h + state;
  float* rh = c + state;
  float* gx = rh + state;
  float* gh = gx + gates;
  cudaStream_t stream = cuda::stream_of(ctx);

  StepPos pos;
  pos.S = S, pos.N = N, pos.layout = s.layout;
  for (int d = 0; d < D; ++d)
    if (dir == "reverse" || d == 1) pos.reverse_mask |= 1u << d;
  if (has_lens) {
    const DataType lt = ctx.input(4).dtype();
    if (lt != DataType::kInt32 && lt != DataType::kInt64) return ctx.error("sequence_lens must be int32 or int64");
    pos.lens = ctx.input(4).data();
    pos.lens64 = lt == DataType::kInt64;
  }
  CellArgs cell;
  cell.D = D, cell.H = H, cell.lbr = lbr;
  cell.input_forget = attrs.get_int("input_forget", 0) != 0;
  cell.clip = attrs.has("clip") ? attrs.get_float("clip", 0.f) : 0.f;
  for (int d = 0; d < D; ++d)
    for (int k = 0; k < nf; ++k) {
      const rnn::Activation& a = acts[static_cast<size_t>(d * nf + k)];
      cell.f[d][k] = Act{a.kind, static_cast<float>(a.alpha), static_cast<float>(a.beta)};
    }
  cell.gx = gx, cell.h = h, cell.c = c, cell.rh = rh;
  cell.gh = C == Cell::kGru ? gh : nullptr;
  cell.p = has_p ? ctx.input(7).data() : nullptr;
  cell.y = ctx.has_output(0) && ctx.output(0).numel() > 0 ? ctx.output(0).data() : nullptr;

  KILN_CUDA_DISPATCH_FLOAT(X.dtype(), T, {
    state_kernel<T><<<cuda::grid_for(state), cuda::kBlock, 0, stream>>>(
        h, ctx.has_input(5) ? ctx.input(5).data_as<T>() : nullptr, nullptr, D, N, H, s.layout);
    if (C == Cell::kLstm)
      state_kernel<T><<<cuda::grid_for(state), cuda::kBlock, 0, stream>>>(
          c, ctx.has_input(6) ? ctx.input(6).data_as<T>() : nullptr, nullptr, D, N, H, s.layout);
    // Y past an entry's sequence is 0.
    if (cell.y && has_lens) {
      cudaError_t e = cudaMemsetAsync(cell.y, 0, ctx.output(0).nbytes(), stream);
      if (e != cudaSuccess) return ctx.error(std::string("cudaMemsetAsync failed: ") + cudaGetErrorString(e));
    }
    const T* bias = has_b ? ctx.input(3).data_as<T>() : nullptr;
    Segment sx;  // W x_t + Wb
    sx.w = W.data(), sx.w_dir_stride = G * H * I, sx.K = I, sx.from_x = true;
    sx.bias = bias, sx.bias_dir_stride = 2 * G * H;
    Segment sh;  // R h + Rb
    sh.w = R.data(), sh.w_dir_stride = G * H * H, sh.K = H, sh.state = h;
    sh.bias = bias ? bias + G * H : nullptr, sh.bias_dir_stride = 2 * G * H;
    GemmArgs g;
    g.x = X.data(), g.out_ld = G * H;
    const int64_t cells = D * N * H;
    for (int64_t step = 0; step < S; ++step) {
      pos.step = step;
      g.pos = pos;
      cell.pos = pos;
      if (C != Cell::kGru) {  // one GEMM holds every gate term
        g.seg[0] = sx, g.seg[1] = sh, g.num_seg = 2, g.out = gx, g.col0 = 0, g.rows = G * H;
        launch_gemm<T>(g, D, stream);
        cell_kernel<C, T><<<cuda::grid_for(cells), cuda::kBlock, 0, stream>>>(cell, cells);
        continue;
      }
      g.seg[0] = sx, g.num_seg = 1, g.out = gx, g.col0 = 0, g.rows = G * H;
      launch_gemm<T>(g, D, stream);
      g.seg[0] = sh, g.out = gh, g.rows = lbr ? G * H : 2 * H;
      launch_gemm<T>(g, D, stream);
      if (lbr) {
        cell.phase = 0;
        cell_kernel<C, T><<<cuda::grid_for(cells), cuda::kBlock, 0, stream>>>(cell, cells);
        continue;
      }
      cell.phase = 1;
      cell_kernel<C, T><<<cuda::grid_for(cells), cuda::kBlock, 0, stream>>>(cell, cells);
      Segment sr = sh;  // R_h (r . h) + Rb_h
      sr.state = rh, sr.row0 = 2 * H;
      g.seg[0] = sr, g.col0 = 2 * H, g.rows = H;
      launch_gemm<T>(g, D, stream);
      cell.phase = 2;
      cell_kernel<C, T><<<cuda::grid_for(cells), cuda::kBlock, 0, stream>>>(cell, cells);
    }
    if (ctx.has_output(1) && ctx.output(1).numel() > 0)
      state_kernel<T><<<cuda::grid_for(state), cuda::kBlock, 0, stream>>>(h, nullptr, ctx.output(1).data_as<T>(), D, N,
                                                                          H, s.layout);
    if (C == Cell::kLstm && ctx.has_output(2) && ctx.output(2).numel() > 0)
      state_kernel<T><<<cuda::grid_for(state), cuda::kBlock, 0, stream>>>(c, nullptr, ctx.output(2).data_as<T>(), D, N,
                                                                          H, s.layout);
  });
  return cuda::launch_status(ctx, "rnn");
}

bool is_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16; }

template <Cell C>
bool rnn_applies(const ir::Node& node, const std::vector<TensorType>& in) {
  if (in.size() < 3 || !is_float(in[0].dtype)) return false;
  for (size_t i : {1, 2, 3, 5, 6, 7})  // W, R, B, initial_h, initial_c, P share X's dtype
    if (i < in.size() && in[i].dtype != DataType::kUndefined && in[i].dtype != in[0].dtype) return false;
  if (in.size() > 4 && in[4].dtype != DataType::kUndefined && in[4].dtype != DataType::kInt32 &&
      in[4].dtype != DataType::kInt64)
    return false;
  // RNN and GRU have no Y_c; the reference leaves a requested one unwritten.
  if (C != Cell::kLstm && node.outputs.size() > 2 && node.outputs[2] != nullptr) return false;
  const std::string dir = node.attrs.get_string("direction", "forward");
  if (dir != "forward" && dir != "reverse" && dir != "bidirectional") return false;
  const int64_t layout = node.attrs.get_int("layout", 0);
  if (layout != 0 && layout != 1) return false;
  return rnn::parse_activations(node, C, rnn::num_directions(dir)).ok();
}

}  // namespace

void register_rnn_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel("", "RNN", FastKernel{"cuda.rnn", rnn_cuda<Cell::kRnn>, rnn_applies<Cell::kRnn>});
  (void)r.add_cuda_kernel("", "GRU", FastKernel{"cuda.rnn", rnn_cuda<Cell::kGru>, rnn_applies<Cell::kGru>});
  (void)r.add_cuda_kernel("", "LSTM", FastKernel{"cuda.rnn", rnn_cuda<Cell::kLstm>, rnn_applies<Cell::kLstm>});
}

}  // namespace kiln::ops

// CUDA kernels of the select family: Cast / CastLike (convert_value's semantics:
// float -> int truncates toward zero and saturates, NaN -> 0; -> bool is != 0)
// and Where over three broadcast operands. Dropout's CUDA kernel is the copy in
// identity_cuda.cu.
#include "ops/select/where_nonzero.h"
#include "ops/unary/eltwise_cuda.cuh"

namespace kiln::ops {
namespace {

using namespace cuda::eltwise;

// float8, int4 and strings are not castable here; uint16/32/64 fall back to the CPU.
constexpr uint32_t kCastTypes = kBitsFloat | kBitF64 | kBitI8 | kBitU8 | kBitI16 | kBitI32 | kBitI64 | kBitBool;

template <class To, class From>
struct CastFn {
  __device__ __forceinline__ To operator()(From v) const { return convert<To>(v); }
};

Status cast_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.numel() != y.numel()) return ctx.error("output size does not match the input", ErrorCode::kInternal);
  const int64_t n = y.numel();
  if (n == 0) return Status();
  cudaStream_t s = cuda::stream_of(ctx);
  if (x.dtype() == y.dtype()) {
    if (x.data() != y.data()) cudaMemcpyAsync(y.data(), x.data(), x.nbytes(), cudaMemcpyDeviceToDevice, s);
    return cuda::launch_status(ctx, "cast copy");
  }
  bool ok_to = false;
  const bool ok_from = visit_type<kCastTypes>(x.dtype(), [&](auto from_tag) {
    using From = typename decltype(from_tag)::type;
    ok_to = visit_type<kCastTypes>(y.dtype(), [&](auto to_tag) {
      using To = typename decltype(to_tag)::type;
      launch_map(x.data_as<From>(), y.data_as<To>(), n, CastFn<To, From>{}, s);
    });
  });
  if (!ok_from || !ok_to) return unsupported_dtype(ctx, ok_from ? y.dtype() : x.dtype());
  return cuda::launch_status(ctx, "cast");
}

bool cast_applies(const ir::Node& node, const std::vector<TensorType>& in) {
  if (in.empty() || !(type_bit(in[0].dtype) & kCastTypes)) return false;
  DataType to = DataType::kUndefined;
  if (node.op_type == "CastLike") {
    if (in.size() < 2) return false;
    to = in[1].dtype;
  } else {
    const ir::Attribute* a = node.attrs.find("to");
    if (!a || a->kind != ir::Attribute::Kind::kInt) return false;
    to = static_cast<DataType>(a->i);
  }
  return (type_bit(to) & kCastTypes) != 0;
}

// ---- Where: moves elements, so one kernel per element size (and, for kiln's
// WhereNonzero, per condition element size: C's bits != 0).
template <class I, class W, class C>
__global__ void where_kernel(const C* c, const W* x, const W* y, W* out, int64_t n, BroadcastPlan<3> p) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    I off[3];
    plan_offsets<I, 3>(p, 3, static_cast<I>(i), off);
    out[i] = c[off[0]] != C(0) ? x[off[1]] : y[off[2]];
  }
}

// One Where launch for condition elements C (the dispatch over X's element size returns
// an error Status for sizes it has no kernel for).
template <class C>
Status launch_where(KernelContext& ctx, const C* pc, const Tensor& x, const Tensor& y, Tensor& out,
                    const BroadcastPlan<3>& p, cudaStream_t s) {
  const int64_t n = out.numel();
  KILN_CUDA_DISPATCH_BYTES(x.dtype(), W, {
    if (fits_int32(n))
      where_kernel<int32_t, W, C>
          <<<cuda::grid_for(n), cuda::kBlock, 0, s>>>(pc, x.data_as<W>(), y.data_as<W>(), out.data_as<W>(), n, p);
    else
      where_kernel<int64_t, W, C>
          <<<cuda::grid_for(n), cuda::kBlock, 0, s>>>(pc, x.data_as<W>(), y.data_as<W>(), out.data_as<W>(), n, p);
  });
  return Status();
}

Status where_cuda(KernelContext& ctx) {
  const Tensor& c = ctx.input(0);
  const Tensor& x = ctx.input(1);
  const Tensor& y = ctx.input(2);
  Tensor& out = ctx.output(0);
  const bool nonzero = ctx.node().op_type == "WhereNonzero";
  const size_t cs = dtype_size(c.dtype());
  const bool cond_ok = nonzero ? nonzero_condition_dtype(c.dtype()) : c.dtype() == DataType::kBool;
  if (!cond_ok || x.dtype() != y.dtype() || out.dtype() != x.dtype())
    return ctx.error(std::string(nonzero ? "WhereNonzero expects an integer or bool" : "Where expects a bool") +
                         " condition and X, Y, output of one dtype",
                     ErrorCode::kInternal);
  for (const Tensor* t : {&c, &x, &y})
    if (!broadcasts_to(t->dims(), out.dims()))
      return ctx.error("input dims do not broadcast to the output dims " + dims_to_string(out.dims()),
                       ErrorCode::kInternal);
  const int64_t n = out.numel();
  if (n == 0) return Status();
  BroadcastPlan<3> p;
  if (!make_plan(out.dims(), {&c.dims(), &x.dims(), &y.dims()}, p))
    return ctx.error("more than 8 dims remain after merging", ErrorCode::kUnsupported);
  cudaStream_t s = cuda::stream_of(ctx);
  Status launched;
  switch (cs) {
    case 1:
      launched = launch_where(ctx, c.data_as<uint8_t>(), x, y, out, p, s);
      break;
    case 2:
      launched = launch_where(ctx, c.data_as<uint16_t>(), x, y, out, p, s);
      break;
    case 4:
      launched = launch_where(ctx, c.data_as<uint32_t>(), x, y, out, p, s);
      break;
    case 8:
      launched = launch_where(ctx, c.data_as<uint64_t>(), x, y, out, p, s);
      break;
    default:
      return ctx.error("unexpected condition element size", ErrorCode::kInternal);
  }
  KILN_RETURN_IF_ERROR(launched);
  return cuda::launch_status(ctx, "where");
}

bool where_applies(const ir::Node& node, const std::vector<TensorType>& in) {
  if (in.size() != 3 || in[1].dtype != in[2].dtype) return false;
  if (node.op_type == "WhereNonzero" ? !nonzero_condition_dtype(in[0].dtype) : in[0].dtype != DataType::kBool)
    return false;
  const size_t size = dtype_size(in[1].dtype);
  return (size == 1 || size == 2 || size == 4 || size == 8) && in[1].dtype != DataType::kString && ranks_fit(in);
}

}  // namespace

void register_select_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel("", "Cast", FastKernel{"cuda.cast", cast_cuda, cast_applies});
  (void)r.add_cuda_kernel("", "CastLike", FastKernel{"cuda.cast", cast_cuda, cast_applies});
  (void)r.add_cuda_kernel("", "Where", FastKernel{"cuda.where", where_cuda, where_applies});
  (void)r.add_cuda_kernel("kiln", "WhereNonzero", FastKernel{"cuda.where", where_cuda, where_applies});
}

}  // namespace kiln::ops

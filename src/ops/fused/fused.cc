// FusedElementwise (domain "kiln"): a chain of elementwise/broadcast ops that the
// fuse_elementwise pass collapsed into one node. Inputs are the chain's external
// tensors (numpy-broadcast together); the string attribute `program` is the
// expression (fused_program.h), evaluated per output element in fp32. The CUDA
// kernel (fused_cuda.cu) compiles the program with NVRTC; this reference
// interprets it, a block of elements at a time.
#include <algorithm>

#include "ops/binary/broadcast.h"
#include "ops/fused/fused_program.h"

namespace kiln::ops {

namespace {

bool fused_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16; }

Result<fused::Program> node_program(const ir::Node& node, size_t num_inputs) {
  const ir::Attribute* a = node.attrs.find("program");
  if (!a || a->kind != ir::Attribute::Kind::kString)
    return Status(ErrorCode::kInvalidModel, "node " + node.describe() + ": needs the string attribute 'program'");
  auto p = fused::parse_program(a->s, static_cast<int>(num_inputs));
  if (!p.ok()) return Status(p.status().code(), "node " + node.describe() + ": " + p.status().message());
  return p;
}

Status infer_fused(InferContext& ctx) {
  const size_t k = ctx.num_inputs();
  if (k == 0 || k > static_cast<size_t>(fused::kMaxInputs))
    return ctx.error("takes 1 to " + std::to_string(fused::kMaxInputs) + " inputs, got " + std::to_string(k));
  std::vector<size_t> all;
  std::vector<DataType> dts;
  for (size_t i = 0; i < k; ++i) {
    if (!ctx.has_input(i)) return ctx.error("input " + std::to_string(i) + " is missing");
    DataType t = ctx.input_dtype(i);
    if (t != DataType::kUndefined && !fused_float(t))
      return ctx.unsupported("input " + std::to_string(i) + " has dtype " + dtype_name(t) +
                             "; FusedElementwise takes float32, float16 and bfloat16");
    all.push_back(i);
    dts.push_back(t);
  }
  KILN_ASSIGN_OR_RETURN(fused::Program p, node_program(ctx.node(), k));
  std::optional<Shape> shape;
  KILN_RETURN_IF_ERROR(infer_broadcast_shape(ctx, all, shape));
  ctx.set_output(0, fused::program_dtype(p, dts), std::move(shape));
  return Status();
}

Status ref_fused(KernelContext& ctx) {
  const size_t k = ctx.num_inputs();
  KILN_ASSIGN_OR_RETURN(fused::Program p, node_program(ctx.node(), k));
  std::vector<const Tensor*> ins;
  for (size_t i = 0; i < k; ++i) {
    if (!ctx.has_input(i)) return ctx.error("input " + std::to_string(i) + " is missing");
    if (!fused_float(ctx.input(i).dtype())) return ctx.error("inputs must be float32, float16 or bfloat16");
    ins.push_back(&ctx.input(i));
  }
  Tensor& y = ctx.output(0);
  if (!fused_float(y.dtype())) return ctx.error("output must be float32, float16 or bfloat16", ErrorCode::kInternal);
  KILN_RETURN_IF_ERROR(check_broadcast_to(ctx, ins, y));
  const int64_t n = y.numel();
  if (n == 0) return Status();
  std::vector<std::vector<int64_t>> strides;
  for (const Tensor* t : ins) strides.push_back(broadcast_strides(t->dims(), y.dims()));
  MultiIndex it(y.dims(), strides);
  constexpr int64_t kBlock = 1024;
  std::vector<std::vector<float>> cols(k, std::vector<float>(static_cast<size_t>(std::min(n, kBlock))));
  std::vector<const float*> col_ptrs(k);
  for (size_t j = 0; j < k; ++j) col_ptrs[j] = cols[j].data();
  std::vector<float> out(static_cast<size_t>(std::min(n, kBlock)));
  std::vector<float> scratch;
  for (int64_t base = 0; base < n; base += kBlock) {
    const int64_t count = std::min(kBlock, n - base);
    for (int64_t e = 0; e < count; ++e, it.next())
      for (size_t j = 0; j < k; ++j) {
        const Tensor& t = *ins[j];
        const int64_t off = it.offset(j);
        float v = 0.f;
        switch (t.dtype()) {
          case DataType::kFloat16:
            v = static_cast<float>(t.data_as<Half>()[off]);
            break;
          case DataType::kBFloat16:
            v = static_cast<float>(t.data_as<BFloat16>()[off]);
            break;
          default:
            v = t.data_as<float>()[off];
            break;
        }
        cols[j][static_cast<size_t>(e)] = v;
      }
    fused::eval_block(p, col_ptrs.data(), count, out.data(), scratch);
    for (int64_t e = 0; e < count; ++e) {
      const float v = out[static_cast<size_t>(e)];
      switch (y.dtype()) {
        case DataType::kFloat16:
          y.data_as<Half>()[base + e] = Half(v);
          break;
        case DataType::kBFloat16:
          y.data_as<BFloat16>()[base + e] = BFloat16(v);
          break;
        default:
          y.data_as<float>()[base + e] = v;
          break;
      }
    }
  }
  return Status();
}

}  // namespace

void register_fused_ops(OpRegistry& r) {
  r.add({.name = "FusedElementwise", .domain = "kiln", .infer = infer_fused, .ref = ref_fused});
}

}  // namespace kiln::ops

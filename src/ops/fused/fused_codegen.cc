// CUDA C++ for a FusedElementwise program, compiled at run time by NVRTC
// (fused_cuda.cu). Plain C++ so the generator is tested without a GPU. The
// source includes no headers: 16-bit floats are handled as raw bits with PTX
// conversions, and the math functions are NVRTC's built-ins (the same expf,
// erff, ... the per-op kernels in unary_cuda.cu call, without fast math).
#include <cmath>
#include <cstdio>
#include <cstring>

#include "ops/fused/fused_program.h"

namespace kiln::ops::fused {

namespace {

// Fixed part: the argument block (laid out as FusedArgs in fused_cuda.cu) and helpers.
constexpr const char* kPrelude = R"(
struct KilnFusedArgs {
  const void* in[16];
  void* out;
  long long n;
  int rank;
  int pad_;
  long long dims[8];
  long long strides[16][8];
};
static_assert(sizeof(KilnFusedArgs) == 1240, "KilnFusedArgs must match FusedArgs on the host");

template <class T>
struct alignas(4 * sizeof(T)) KilnV4 {
  T v[4];
};

static __device__ __forceinline__ float kiln_ld_f32(float v) { return v; }
static __device__ __forceinline__ float kiln_st_f32(float v) { return v; }
static __device__ __forceinline__ float kiln_ld_f16(unsigned short h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
static __device__ __forceinline__ unsigned short kiln_st_f16(float f) {
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}
static __device__ __forceinline__ float kiln_ld_bf16(unsigned short b) {
  return __uint_as_float(static_cast<unsigned int>(b) << 16);
}
static __device__ __forceinline__ unsigned short kiln_st_bf16(float f) {
  unsigned int u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<unsigned short>(u >> 16);
}

static __device__ __forceinline__ float kiln_max(float a, float b) { return (a != a || b != b) ? a + b : (a < b ? b : a); }
static __device__ __forceinline__ float kiln_min(float a, float b) { return (a != a || b != b) ? a + b : (b < a ? b : a); }
// As Clip's reference: lo first, then hi, so min > max gives max; NaN passes.
static __device__ __forceinline__ float kiln_clip(float a, float lo, float hi) {
  const float v = a < lo ? lo : a;
  return v > hi ? hi : v;
}
static __device__ __forceinline__ float kiln_clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }
static __device__ __forceinline__ float kiln_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
static __device__ __forceinline__ float kiln_softplus(float x) { return x > 0.0f ? x + log1pf(expf(-x)) : log1pf(expf(x)); }
static __device__ __forceinline__ float kiln_gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
static __device__ __forceinline__ float kiln_gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
)";

const char* dtype_tag(DataType t) {
  switch (t) {
    case DataType::kFloat16:
      return "f16";
    case DataType::kBFloat16:
      return "bf16";
    default:
      return "f32";
  }
}

const char* storage_type(DataType t) {
  return t == DataType::kFloat16 || t == DataType::kBFloat16 ? "unsigned short" : "float";
}

// An exact fp32 literal: hexadecimal for finite values, bit patterns otherwise.
std::string literal(float v) {
  char buf[48];
  if (std::isfinite(v)) {
    std::snprintf(buf, sizeof(buf), "%af", static_cast<double>(v));
  } else {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    std::snprintf(buf, sizeof(buf), "__uint_as_float(0x%08xu)", bits);
  }
  return buf;
}

std::string operand(const Operand& a) {
  if (a.kind == Operand::Kind::kInput) return tag("x", a.index);
  if (a.kind == Operand::Kind::kTemp) return tag("t", a.index);
  return literal(a.imm);
}

bool is_imm(const Operand& a, float v) { return a.kind == Operand::Kind::kImm && a.imm == v; }

std::string expression(const Instr& ins) {
  auto arg = [&](size_t j) { return operand(ins.args[j]); };
  auto call = [&](const char* f) {
    std::string s = std::string(f) + "(";
    for (size_t j = 0; j < ins.args.size(); ++j) s += (j ? ", " : "") + arg(j);
    return s + ")";
  };
  switch (ins.op) {
    case EwOp::kAdd:
      return arg(0) + " + " + arg(1);
    case EwOp::kSub:
      return arg(0) + " - " + arg(1);
    case EwOp::kMul:
      return arg(0) + " * " + arg(1);
    case EwOp::kDiv:
      return arg(0) + " / " + arg(1);
    case EwOp::kPow:
      // x ** 2 rounded once from double equals x * x rounded once; x ** 1 is x.
      if (is_imm(ins.args[1], 2.0f)) return arg(0) + " * " + arg(0);
      if (is_imm(ins.args[1], 1.0f)) return arg(0);
      return call("powf");
    case EwOp::kMax:
      return call("kiln_max");
    case EwOp::kMin:
      return call("kiln_min");
    case EwOp::kNeg:
      return "-" + arg(0);
    case EwOp::kAbs:
      return call("fabsf");
    case EwOp::kRelu:
      return arg(0) + " < 0.0f ? 0.0f : " + arg(0);
    case EwOp::kLeakyRelu:
      return arg(0) + " < 0.0f ? " + arg(1) + " * " + arg(0) + " : " + arg(0);
    case EwOp::kSigmoid:
      return call("kiln_sigmoid");
    case EwOp::kTanh:
      return call("tanhf");
    case EwOp::kExp:
      return call("expf");
    case EwOp::kLog:
      return call("logf");
    case EwOp::kSqrt:
      return call("sqrtf");
    case EwOp::kReciprocal:
      return "1.0f / " + arg(0);
    case EwOp::kErf:
      return call("erff");
    case EwOp::kClip:
      return call("kiln_clip");
    case EwOp::kGelu:
      return call("kiln_gelu");
    case EwOp::kGeluTanh:
      return call("kiln_gelu_tanh");
    case EwOp::kSwish:
      return arg(0) + " * kiln_sigmoid(" + arg(1) + " * " + arg(0) + ")";
    case EwOp::kHardSigmoid:
      return "kiln_clamp01(" + arg(1) + " * " + arg(0) + " + " + arg(2) + ")";
    case EwOp::kHardSwish:
      return arg(0) + " * kiln_clamp01(" + arg(0) + " / 6.0f + 0.5f)";
    case EwOp::kSoftplus:
      return call("kiln_softplus");
    case EwOp::kSoftsign:
      return arg(0) + " / (1.0f + fabsf(" + arg(0) + "))";
    case EwOp::kMish:
      return arg(0) + " * tanhf(kiln_softplus(" + arg(0) + "))";
    case EwOp::kElu:
      return arg(0) + " < 0.0f ? " + arg(1) + " * expm1f(" + arg(0) + ") : " + arg(0);
    case EwOp::kSelu:
      return arg(2) + " * (" + arg(0) + " > 0.0f ? " + arg(0) + " : " + arg(1) + " * expm1f(" + arg(0) + "))";
    case EwOp::kCastF32:
      return arg(0);
    case EwOp::kCastF16:
      return "kiln_ld_f16(kiln_st_f16(" + arg(0) + "))";
    case EwOp::kCastBF16:
      return "kiln_ld_bf16(kiln_st_bf16(" + arg(0) + "))";
    case EwOp::kCount:
      break;
  }
  return arg(0);
}

}  // namespace

std::string cuda_source(const Program& p, const std::vector<DataType>& inputs, DataType output, CodegenMode mode) {
  const size_t k = inputs.size();
  std::string s = "// Generated by kiln for FusedElementwise: " + print_program(p) + "\n";
  s += "// inputs:";
  for (DataType t : inputs) s += std::string(" ") + dtype_tag(t);
  s += std::string("; output: ") + dtype_tag(output) + "; " +
       (mode.flat ? "flat, scalar mask " + std::to_string(mode.scalar_mask) : std::string("broadcast")) + "\n";
  s += kPrelude;

  // The program as one function of the inputs' fp32 values.
  s += "\nstatic __device__ __forceinline__ float kiln_eval(";
  for (size_t j = 0; j < k; ++j) s += (j ? ", float x" : "float x") + std::to_string(j);
  s += ") {\n";
  for (size_t i = 0; i < p.code.size(); ++i)
    s += "  const float t" + std::to_string(i) + " = " + expression(p.code[i]) + ";\n";
  s += "  return t" + std::to_string(p.code.size() - 1) + ";\n}\n";

  const std::string out_st = storage_type(output);
  const std::string store = std::string("kiln_st_") + dtype_tag(output);
  // Typed pointers to the inputs and the output.
  std::string ptrs;
  for (size_t j = 0; j < k; ++j) {
    const std::string st = storage_type(inputs[j]);
    ptrs += "  const " + st + "* __restrict__ p" + std::to_string(j) + " = static_cast<const " + st + "*>(a.in[" +
            std::to_string(j) + "]);\n";
  }
  ptrs += "  " + out_st + "* __restrict__ po = static_cast<" + out_st + "*>(a.out);\n";
  auto load = [&](size_t j, const std::string& elem) {
    return std::string("kiln_ld_") + dtype_tag(inputs[j]) + "(" + elem + ")";
  };
  auto is_scalar = [&](size_t j) { return mode.flat && j < 32 && (mode.scalar_mask >> j) & 1u; };

  if (mode.flat) {
    // Scalar inputs are read once per thread.
    std::string scalars;
    for (size_t j = 0; j < k; ++j)
      if (is_scalar(j)) scalars += "  const float s" + std::to_string(j) + " = " + load(j, tag("p", j) + "[0]") + ";\n";
    auto eval_at = [&](const std::string& idx) {
      std::string e = "kiln_eval(";
      for (size_t j = 0; j < k; ++j) {
        if (j) e += ", ";
        e += is_scalar(j) ? tag("s", j) : load(j, tag("p", j) + "[" + idx + "]");
      }
      return e + ")";
    };
    const std::string head =
        "  const long long n = a.n;\n"
        "  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;\n"
        "  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;\n";
    s += std::string("\nextern \"C\" __global__ void ") + kFlatKernel + "(const KilnFusedArgs a) {\n" + ptrs + scalars +
         head + "  for (long long i = first; i < n; i += step) po[i] = " + store + "(" + eval_at("i") + ");\n}\n";

    // Four elements per thread and access; the host launches it only when every
    // full-size input and the output are aligned to four elements.
    std::string vec = std::string("\nextern \"C\" __global__ void ") + kFlatVecKernel + "(const KilnFusedArgs a) {\n" +
                      ptrs + scalars + head + "  const long long nv = n / 4;\n" +
                      "  for (long long i = first; i < nv; i += step) {\n";
    for (size_t j = 0; j < k; ++j)
      if (!is_scalar(j)) {
        const std::string st = storage_type(inputs[j]);
        vec += "    const KilnV4<" + st + "> v" + std::to_string(j) + " = reinterpret_cast<const KilnV4<" + st +
               ">*>(p" + std::to_string(j) + ")[i];\n";
      }
    vec += "    KilnV4<" + out_st + "> r;\n#pragma unroll\n    for (int e = 0; e < 4; ++e) r.v[e] = " + store +
           "(kiln_eval(";
    for (size_t j = 0; j < k; ++j) {
      if (j) vec += ", ";
      vec += is_scalar(j) ? tag("s", j) : load(j, tag("v", j) + ".v[e]");
    }
    vec += "));\n    reinterpret_cast<KilnV4<" + out_st + ">*>(po)[i] = r;\n  }\n";
    vec += "  for (long long i = nv * 4 + first; i < n; i += step) po[i] = " + store + "(" + eval_at("i") + ");\n}\n";
    s += vec;
    return s;
  }

  // General broadcast: output index -> per-input offsets through the rank-collapsed
  // dims and strides (at most 8 dims), in 32- or 64-bit arithmetic.
  s += "\ntemplate <class I>\nstatic __device__ __forceinline__ void kiln_bcast(const KilnFusedArgs& a) {\n" + ptrs;
  s += "  const I n = static_cast<I>(a.n);\n"
       "  const I step = static_cast<I>(gridDim.x * blockDim.x);\n"
       "  for (I i = static_cast<I>(blockIdx.x * blockDim.x + threadIdx.x); i < n; i += step) {\n";
  for (size_t j = 0; j < k; ++j) s += "    I o" + std::to_string(j) + " = 0;\n";
  s += "    I r = i;\n"
       "    for (int d = a.rank - 1; d > 0; --d) {\n"
       "      const I dim = static_cast<I>(a.dims[d]);\n"
       "      const I q = r / dim;\n"
       "      const I c = r - q * dim;\n";
  for (size_t j = 0; j < k; ++j)
    s += "      o" + std::to_string(j) + " += c * static_cast<I>(a.strides[" + std::to_string(j) + "][d]);\n";
  s += "      r = q;\n    }\n";
  for (size_t j = 0; j < k; ++j)
    s += "    o" + std::to_string(j) + " += r * static_cast<I>(a.strides[" + std::to_string(j) + "][0]);\n";
  s += "    po[i] = " + store + "(kiln_eval(";
  for (size_t j = 0; j < k; ++j) s += (j ? ", " : "") + load(j, tag("p", j) + "[o" + std::to_string(j) + "]");
  s += "));\n  }\n}\n";
  s += std::string("\nextern \"C\" __global__ void ") + kBcast32Kernel +
       "(const KilnFusedArgs a) { kiln_bcast<int>(a); }\n";
  s += std::string("extern \"C\" __global__ void ") + kBcast64Kernel +
       "(const KilnFusedArgs a) { kiln_bcast<long long>(a); }\n";
  return s;
}

}  // namespace kiln::ops::fused

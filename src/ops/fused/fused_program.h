// The expression program of a kiln FusedElementwise node, shared by the
// fuse_elementwise pass (which writes it), the CPU reference (which interprets
// it) and the CUDA kernel (which turns it into CUDA C++ for NVRTC).
//
// Format, version 1: the string attribute `program`, instructions separated by
// ';' after a version tag. Instruction i defines temporary t<i>; its operands are
// external inputs `in<k>` (the node's inputs), earlier temporaries `t<j>` (j < i)
// or float immediates (folded scalar constants, printed with %.9g so they read
// back bit-exact; `inf`, `-inf`, `nan` allowed). The last instruction is the result.
//
//   v1; t0 = Mul(in0, 0.5); t1 = Sigmoid(t0); t2 = Add(t1, in1)
//
// Every value is computed in fp32: inputs are converted from their dtype, each
// instruction rounds to fp32 only, and the result is converted to the output
// dtype once. The unfused graph rounds every intermediate to its dtype (fp16 in a
// half engine), so fused fp16/bf16 results are at least as accurate. Cast* ops
// round explicitly (CastF16 = fp32 -> fp16 -> fp32) and set the dtype that
// follows; every other instruction takes the dtype of its first non-immediate
// operand, so the program itself is dtype-agnostic (reduce_precision may turn
// the node's inputs to fp16 without touching it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln::ops::fused {

/// prefix + decimal index ("t3", "in0"): operand names of the program text and the generated source.
inline std::string tag(const char* prefix, int64_t i) {
  std::string s(prefix);
  s += std::to_string(i);
  return s;
}

/// Most external inputs one FusedElementwise node reads (the CUDA kernel's argument block holds this many).
inline constexpr int kMaxInputs = 16;
/// Most instructions in one program.
inline constexpr int kMaxInstructions = 256;
/// The version tag that opens every program.
inline constexpr const char* kProgramVersion = "v1";

/// Instruction opcodes. Parameters (alpha, bounds) are ordinary operands,
/// usually immediates.
enum class EwOp : uint8_t {
  kAdd,          ///< a + b
  kSub,          ///< a - b
  kMul,          ///< a * b
  kDiv,          ///< a / b
  kPow,          ///< a ** b
  kMax,          ///< NaN-propagating max
  kMin,          ///< NaN-propagating min
  kNeg,          ///< -a
  kAbs,          ///< |a|
  kRelu,         ///< max(a, 0), NaN passes
  kLeakyRelu,    ///< (a, alpha)
  kSigmoid,      ///< 1 / (1 + e^-a)
  kTanh,         ///< tanh a
  kExp,          ///< e^a
  kLog,          ///< ln a
  kSqrt,         ///< sqrt a
  kReciprocal,   ///< 1 / a
  kErf,          ///< erf a
  kClip,         ///< (a, lo, hi): lo if a < lo, hi if a > hi, NaN passes
  kGelu,         ///< erf form
  kGeluTanh,     ///< tanh approximation
  kSwish,        ///< (a, alpha): a * sigmoid(alpha * a)
  kHardSigmoid,  ///< (a, alpha, beta): clamp(alpha * a + beta, 0, 1)
  kHardSwish,    ///< a * clamp(a / 6 + 1/2, 0, 1)
  kSoftplus,     ///< log(1 + e^a)
  kSoftsign,     ///< a / (1 + |a|)
  kMish,         ///< a * tanh(softplus(a))
  kElu,          ///< (a, alpha)
  kSelu,         ///< (a, alpha, gamma)
  kCastF32,      ///< no rounding; the dtype that follows is fp32
  kCastF16,      ///< rounds to fp16
  kCastBF16,     ///< rounds to bf16
  kCount
};

/// Name (as written in programs) and operand count of an opcode.
struct EwOpInfo {
  const char* name;
  int arity;
};
const EwOpInfo& op_info(EwOp op);

/// One operand: an external input, an earlier temporary, or an fp32 immediate.
struct Operand {
  enum class Kind : uint8_t { kInput, kTemp, kImm };
  Kind kind = Kind::kImm;
  int32_t index = 0;  ///< input or temporary number
  float imm = 0.f;
  static Operand input(int k) { return {Kind::kInput, k, 0.f}; }
  static Operand temp(int t) { return {Kind::kTemp, t, 0.f}; }
  static Operand immediate(float v) { return {Kind::kImm, 0, v}; }
  bool operator==(const Operand& o) const;
};

struct Instr {
  EwOp op = EwOp::kAdd;
  std::vector<Operand> args;  ///< op_info(op).arity of them
};

/// A parsed, validated program.
struct Program {
  std::vector<Instr> code;
};

/// Parses and validates `text`: version tag, known ops with the right operand
/// count, inputs below `num_inputs`, temporaries defined before use, at least one
/// instruction. Errors say what is wrong and where.
Result<Program> parse_program(const std::string& text, int num_inputs);

/// The text form (round-trips through parse_program).
std::string print_program(const Program& p);

/// Dtype of the result given the inputs' dtypes (see the format notes above);
/// kUndefined when it follows an input whose dtype is unknown.
DataType program_dtype(const Program& p, const std::vector<DataType>& inputs);

/// Opcode by name (as printed), or EwOp::kCount.
EwOp op_by_name(const std::string& name);

/// Evaluates the program on `count` elements: `in[k][e]` is input k's element e
/// converted to fp32; writes out[e]. `scratch` holds count * code.size() floats.
void eval_block(const Program& p, const float* const* in, int64_t count, float* out, std::vector<float>& scratch);

// ---- CUDA code generation (plain C++: tested on machines without a GPU)

/// The kernels one generated source defines (extern "C", one argument: FusedArgs).
inline constexpr const char* kFlatKernel = "kiln_fused_flat";         ///< inputs full-size or scalar
inline constexpr const char* kFlatVecKernel = "kiln_fused_flat_vec";  ///< same, 4 elements per access
inline constexpr const char* kBcast32Kernel = "kiln_fused_bcast32";   ///< strided broadcast, 32-bit indices
inline constexpr const char* kBcast64Kernel = "kiln_fused_bcast64";   ///< strided broadcast, 64-bit indices

/// Which kernels a source holds: `flat` with a bit per scalar input (read once
/// per thread), or the general strided broadcast.
struct CodegenMode {
  bool flat = false;
  uint32_t scalar_mask = 0;  ///< flat only: bit k set when input k has one element
};

/// CUDA C++ for NVRTC (no #includes): the program's expression over inputs of
/// `inputs` dtypes (fp32/fp16/bf16), stored as `output`. The kernels take one
/// argument laid out as FusedArgs in fused_cuda.cu.
std::string cuda_source(const Program& p, const std::vector<DataType>& inputs, DataType output, CodegenMode mode);

/// Compiles CUDA source with NVRTC for sm_<arch> (e.g. 90) and returns the
/// cubin's size or the compile log as an error. Set by the CUDA backend when
/// it registers its kernels; null in builds without CUDA (tests skip then).
using NvrtcCheckFn = Result<size_t> (*)(const std::string& source, int arch);
NvrtcCheckFn& nvrtc_check_hook();

}  // namespace kiln::ops::fused

// FusedElementwise: program parsing/printing, hostile programs, the reference
// against the unfused ops one by one, NVRTC compiles of the generated CUDA source
// (no GPU needed), and the CUDA kernel against the reference (GPU only).
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include <unistd.h>

#include "harness/scoped_env.h"
#include "ops/fused/fused_program.h"
#include "ops/unary/eltwise_test_util.h"

namespace kiln::test {
namespace {

using ops::fused::CodegenMode;
using ops::fused::EwOp;
using ops::fused::Operand;
using ops::fused::parse_program;
using ops::fused::print_program;
using ops::fused::Program;

constexpr DataType kF32 = DataType::kFloat32;
constexpr DataType kF16 = DataType::kFloat16;
constexpr DataType kBF16 = DataType::kBFloat16;

OpCase fused_case(const std::string& program) {
  OpCase c("FusedElementwise", 1, "kiln");
  c.attr("program", ir::Attribute::from_string(program));
  return c;
}

bool same_program(const Program& a, const Program& b) {
  if (a.code.size() != b.code.size()) return false;
  for (size_t i = 0; i < a.code.size(); ++i)
    if (a.code[i].op != b.code[i].op || a.code[i].args != b.code[i].args) return false;
  return true;
}

// ---------------------------------------------------------------- the program format

TEST(FusedProgram, ParsesAndPrintsCanonically) {
  auto p = parse_program("v1;t0=Mul( in0 ,in1 ); t1 = Sigmoid(t0);t2 = Add(t1, 0.5);", 2);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  ASSERT_EQ(p->code.size(), 3u);
  EXPECT_EQ(p->code[0].op, EwOp::kMul);
  EXPECT_EQ(p->code[2].args[1], Operand::immediate(0.5f));
  EXPECT_EQ(print_program(*p), "v1; t0 = Mul(in0, in1); t1 = Sigmoid(t0); t2 = Add(t1, 0.5)");
}

TEST(FusedProgram, RoundTripsEveryOpAndExactImmediates) {
  const float imms[] = {0.1f,
                        -0.0f,
                        1.0f / 3.0f,
                        std::numeric_limits<float>::denorm_min(),
                        std::numeric_limits<float>::max(),
                        std::numeric_limits<float>::lowest(),
                        std::numeric_limits<float>::infinity(),
                        -std::numeric_limits<float>::infinity(),
                        std::numeric_limits<float>::quiet_NaN(),
                        1.67326319217681884765625f};
  Program p;
  int imm = 0;
  for (int o = 0; o < static_cast<int>(EwOp::kCount); ++o) {
    ops::fused::Instr ins;
    ins.op = static_cast<EwOp>(o);
    const int arity = ops::fused::op_info(ins.op).arity;
    ins.args.push_back(o == 0 ? Operand::input(0) : Operand::temp(o - 1));
    for (int j = 1; j < arity; ++j)
      ins.args.push_back(j == 1 && o % 3 == 0 ? Operand::input(1) : Operand::immediate(imms[imm++ % std::size(imms)]));
    p.code.push_back(ins);
  }
  const std::string text = print_program(p);
  auto back = parse_program(text, 2);
  ASSERT_TRUE(back.ok()) << back.status().to_string() << "\n" << text;
  EXPECT_TRUE(same_program(p, *back)) << text << "\n" << print_program(*back);
  EXPECT_EQ(print_program(*back), text);
}

TEST(FusedProgram, RejectsHostileProgramsClearly) {
  std::string many = "v1; t0 = Neg(in0)";
  for (int i = 1; i <= ops::fused::kMaxInstructions; ++i)
    many += "; t" + std::to_string(i) + " = Neg(t" + std::to_string(i - 1) + ")";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "version tag"},
      {"garbage", "version tag"},
      {"v2; t0 = Add(in0, in1)", "version tag"},
      {"v1", "no instructions"},
      {"v1;", "no instructions"},
      {"v1; t0 = Frobnicate(in0)", "unknown op 'Frobnicate'"},
      {"v1; t0 = Add(in0, in2)", "names no input"},
      {"v1; t0 = Add(in0, in99999999999999)", "names no input"},
      {"v1; t1 = Add(in0, in1)", "must define t0"},
      {"v1; t0 = Add(t0, in1)", "earlier temporary"},
      {"v1; t0 = Neg(in0); t1 = Add(t5, in1)", "earlier temporary"},
      {"v1; t0 = Add(in0)", "takes 2 operand(s), got 1"},
      {"v1; t0 = Clip(in0, 1, 2, 3)", "takes 3 operand(s), got 4"},
      {"v1; t0 = Add(1, 2)", "needs an input or temporary"},
      {"v1; t0 = Add(in0, 1x)", "is not in<k>, t<j> or a number"},
      {"v1; t0 = Add(in0, )", "is not in<k>, t<j> or a number"},
      {"v1; t0 = Add(in0, in1", "expected Op(operands)"},
      {"v1; Add(in0, in1)", "expected 't0 = Op(...)'"},
      {"v1; t0 = (in0)", "unknown op"},
      {std::string("v1; t0 = Add(in0,\x01\xff)"), "is not in<k>"},
      {many, "more than"},
  };
  for (const auto& [text, want] : cases) {
    SCOPED_TRACE(text.substr(0, 60));
    auto p = parse_program(text, 2);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), ErrorCode::kInvalidModel);
    EXPECT_NE(p.status().message().find(want), std::string::npos) << p.status().message();
  }
}

TEST(FusedElementwise, InferenceRejectsBadNodes) {
  {  // garbage program: an error naming the node and the problem, never a crash
    OpCase c = fused_case("v1; t0 = Add(in0, in7)");
    c.input(kF32, {2, 3}).input(kF32, {3});
    auto r = c.run();
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("names no input"), std::string::npos) << r.status().to_string();
    EXPECT_NE(r.status().message().find("FusedElementwise"), std::string::npos) << r.status().to_string();
  }
  {  // no program
    OpCase c("FusedElementwise", 1, "kiln");
    c.input(kF32, {2});
    auto r = c.run();
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("program"), std::string::npos);
  }
  {  // program of the wrong attribute kind
    OpCase c("FusedElementwise", 1, "kiln");
    c.attr("program", ir::Attribute::from_int(3));
    c.input(kF32, {2});
    EXPECT_FALSE(c.run().ok());
  }
  {  // integer input
    OpCase c = fused_case("v1; t0 = Neg(in0)");
    c.input(DataType::kInt32, {2});
    auto r = c.run();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), ErrorCode::kUnsupported);
  }
  {  // shapes that do not broadcast
    OpCase c = fused_case("v1; t0 = Add(in0, in1)");
    c.input(kF32, {2, 3}).input(kF32, {4});
    EXPECT_FALSE(c.run().ok());
  }
}

TEST(FusedElementwise, OutputDtypeFollowsTheProgram) {
  auto infer = [](const std::string& program, std::vector<DataType> dts) {
    OpCase c = fused_case(program);
    for (DataType t : dts) c.input(t, {2, 2});
    std::vector<ops::TensorType> types;
    for (DataType t : dts) types.push_back({t, Shape{2, 2}});
    auto r = ops::infer_node(c.node(), types, std::vector<const Tensor*>(dts.size(), nullptr));
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? (*r)[0].dtype : DataType::kUndefined;
  };
  EXPECT_EQ(infer("v1; t0 = Add(in0, in1)", {kF16, kF16}), kF16);
  EXPECT_EQ(infer("v1; t0 = Add(2, in0)", {kBF16}), kBF16);
  EXPECT_EQ(infer("v1; t0 = Add(in0, in1); t1 = CastF32(t0)", {kF16, kF16}), kF32);
  EXPECT_EQ(infer("v1; t0 = CastF16(in0); t1 = Relu(t0)", {kF32}), kF16);
}

// ---------------------------------------------------------------- reference vs. the unfused ops

struct OpCheck {
  std::string program;  // over in0 (and in1)
  const char* op;
  const char* domain;
  int opset;
  std::vector<std::pair<std::string, ir::Attribute>> attrs;
  int inputs;
  double lo = -3, hi = 3;
  double lo1 = -3, hi1 = 3;
};

TEST(FusedElementwise, EachOpMatchesItsOnnxOp) {
  using A = ir::Attribute;
  const std::vector<OpCheck> checks = {
      {"Add(in0, in1)", "Add", "", 17, {}, 2},
      {"Sub(in0, in1)", "Sub", "", 17, {}, 2},
      {"Mul(in0, in1)", "Mul", "", 17, {}, 2},
      {"Div(in0, in1)", "Div", "", 17, {}, 2, -3, 3, 0.5, 2},
      {"Pow(in0, in1)", "Pow", "", 17, {}, 2, 0.2, 3, -2, 2},
      {"Max(in0, in1)", "Max", "", 17, {}, 2},
      {"Min(in0, in1)", "Min", "", 17, {}, 2},
      {"Neg(in0)", "Neg", "", 17, {}, 1},
      {"Abs(in0)", "Abs", "", 17, {}, 1},
      {"Relu(in0)", "Relu", "", 17, {}, 1},
      {"LeakyRelu(in0, 0.125)", "LeakyRelu", "", 17, {{"alpha", A::from_float(0.125f)}}, 1},
      {"Sigmoid(in0)", "Sigmoid", "", 17, {}, 1},
      {"Tanh(in0)", "Tanh", "", 17, {}, 1},
      {"Exp(in0)", "Exp", "", 17, {}, 1},
      {"Log(in0)", "Log", "", 17, {}, 1, 0.05, 4},
      {"Sqrt(in0)", "Sqrt", "", 17, {}, 1, 0, 4},
      {"Reciprocal(in0)", "Reciprocal", "", 17, {}, 1, 0.25, 4},
      {"Erf(in0)", "Erf", "", 17, {}, 1},
      {"Clip(in0, -0.5, 1.25)", "Clip", "", 6, {{"min", A::from_float(-0.5f)}, {"max", A::from_float(1.25f)}}, 1},
      {"Clip(in0, 1, -1)", "Clip", "", 6, {{"min", A::from_float(1.0f)}, {"max", A::from_float(-1.0f)}}, 1},
      {"Gelu(in0)", "Gelu", "", 20, {}, 1},
      {"GeluTanh(in0)", "Gelu", "", 20, {{"approximate", A::from_string("tanh")}}, 1},
      {"Gelu(in0)", "Gelu", "com.microsoft", 1, {}, 1},
      {"Swish(in0, 1.5)", "Swish", "", 24, {{"alpha", A::from_float(1.5f)}}, 1},
      {"Swish(in0, 1.70200002)", "QuickGelu", "com.microsoft", 1, {}, 1},
      {"HardSigmoid(in0, 0.3, 0.4)",
       "HardSigmoid",
       "",
       17,
       {{"alpha", A::from_float(0.3f)}, {"beta", A::from_float(0.4f)}},
       1},
      {"HardSwish(in0)", "HardSwish", "", 17, {}, 1, -5, 5},
      {"Softplus(in0)", "Softplus", "", 17, {}, 1, -20, 20},
      {"Softsign(in0)", "Softsign", "", 17, {}, 1},
      {"Mish(in0)", "Mish", "", 18, {}, 1},
      {"Elu(in0, 0.75)", "Elu", "", 17, {{"alpha", A::from_float(0.75f)}}, 1},
      {"Selu(in0, 1.5, 1.25)", "Selu", "", 17, {{"alpha", A::from_float(1.5f)}, {"gamma", A::from_float(1.25f)}}, 1},
      {"CastF16(in0)", "Cast", "", 19, {{"to", A::from_int(static_cast<int64_t>(kF16))}}, 1, -6e4, 6e4},
      {"CastBF16(in0)", "Cast", "", 19, {{"to", A::from_int(static_cast<int64_t>(kBF16))}}, 1, -1e5, 1e5},
  };
  std::mt19937 rng(7);
  for (const OpCheck& k : checks) {
    SCOPED_TRACE(k.program);
    OpCase unfused(k.op, k.opset, k.domain);
    for (const auto& [name, a] : k.attrs) unfused.attr(name, a);
    OpCase fused = fused_case("v1; t0 = " + k.program);
    for (int i = 0; i < k.inputs; ++i) {
      Tensor t =
          i == 0 ? random_tensor(kF32, {2, 3, 5}, rng, k.lo, k.hi) : random_tensor(kF32, {3, 1}, rng, k.lo1, k.hi1);
      unfused.input(t);
      fused.input(t);
    }
    auto want = unfused.run();
    auto got = fused.run();
    ASSERT_TRUE(want.ok()) << want.status().to_string();
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_TRUE(tensors_close((*got)[0], (*want)[0], 1e-6, 1e-7));
  }
}

TEST(FusedElementwise, ChainBroadcastsAndMatchesAnIndependentOracle) {
  // y = sigmoid(x * s) + b, with s a [C,1,1] scale and b a scalar, over [N,C,H,W].
  const std::string prog = "v1; t0 = Mul(in0, in1); t1 = Sigmoid(t0); t2 = Add(t1, in2); t3 = Mul(t2, 0.5)";
  for (const Tol& t : {Tol{kF32, 1e-6, 1e-6}, Tol{kF16, 2e-3, 1e-3}, Tol{kBF16, 1.6e-2, 1e-2}}) {
    SCOPED_TRACE(dtype_name(t.dtype));
    OpCase c = fused_case(prog);
    c.input(t.dtype, {2, 3, 4, 5}).input(t.dtype, {3, 1, 1}).input(t.dtype, {});
    auto ins = case_inputs(c);
    Tensor want = expected_eltwise(t.dtype, {2, 3, 4, 5}, ins, [](const std::vector<double>& v) {
      return (1.0 / (1.0 + std::exp(-v[0] * v[1])) + v[2]) * 0.5;
    });
    auto got = c.run();
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_TRUE(tensors_close((*got)[0], want, t.rtol, t.atol));
  }
}

TEST(FusedElementwise, KeepsIntermediatesInFp32AndRoundsOnCastOnly) {
  // (x * 1000) * 1000 / 1e6 overflows fp16 between the steps in an unfused fp16
  // graph; the program keeps fp32 and gets x back. CastF16 rounds explicitly.
  OpCase c = fused_case("v1; t0 = Mul(in0, 1000); t1 = Mul(t0, 1000); t2 = Div(t1, 1000000)");
  c.input(Tensor::from_vector<float>(kF16, {3}, {1.5f, -2.0f, 0.25f}));
  auto got = c.run();
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_TRUE(tensors_close((*got)[0], Tensor::from_vector<float>(kF16, {3}, {1.5f, -2.0f, 0.25f}), 0, 0));

  OpCase r = fused_case("v1; t0 = CastF16(in0); t1 = Sub(in0, t0)");
  r.input(Tensor::from_vector<float>(kF32, {2}, {1.0f + 1.0f / 4096.0f, 3.0f}));
  got = r.run();
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  // 1 + 2^-12 rounds to 1 in fp16; the difference is the rounding error.
  EXPECT_TRUE(tensors_close((*got)[0], Tensor::from_vector<float>(kF32, {2}, {1.0f / 4096.0f, 0.0f}), 0, 0));
}

// ---------------------------------------------------------------- generated CUDA source

const char* kEveryOp =
    "v1; t0 = Mul(in0, in1); t1 = Add(t0, in2); t2 = Sub(t1, 0.25); t3 = Div(t2, 1.5); t4 = Pow(t3, 2);"
    " t5 = Pow(in0, in1); t6 = Max(t4, t5); t7 = Min(t6, in2); t8 = Neg(t7); t9 = Abs(t8); t10 = Relu(t9);"
    " t11 = LeakyRelu(t10, 0.01); t12 = Sigmoid(t11); t13 = Tanh(t12); t14 = Exp(t13); t15 = Log(t14);"
    " t16 = Sqrt(t15); t17 = Reciprocal(t16); t18 = Erf(t17); t19 = Clip(t18, -inf, 6); t20 = Gelu(t19);"
    " t21 = GeluTanh(t20); t22 = Swish(t21, 1.702); t23 = HardSigmoid(t22, 0.2, 0.5); t24 = HardSwish(t23);"
    " t25 = Softplus(t24); t26 = Softsign(t25); t27 = Mish(t26); t28 = Elu(t27, 1); t29 = Selu(t28, 1.67, 1.05);"
    " t30 = CastF16(t29); t31 = CastBF16(t30); t32 = CastF32(t31); t33 = Clip(t32, -3.40282347e+38, inf);"
    " t34 = Pow(t33, 1); t35 = Sub(t34, -0)";

TEST(FusedCodegen, SourceNamesTheKernelsOfItsMode) {
  auto p = parse_program(kEveryOp, 3);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  const std::string flat = ops::fused::cuda_source(*p, {kF32, kF16, kBF16}, kF16, CodegenMode{true, 2u});
  EXPECT_NE(flat.find(ops::fused::kFlatKernel), std::string::npos);
  EXPECT_NE(flat.find(ops::fused::kFlatVecKernel), std::string::npos);
  EXPECT_NE(flat.find("const float s1 = kiln_ld_f16(p1[0]);"), std::string::npos) << flat;
  EXPECT_EQ(flat.find("#include"), std::string::npos);
  const std::string bcast = ops::fused::cuda_source(*p, {kF32, kF16, kBF16}, kF32, CodegenMode{});
  EXPECT_NE(bcast.find(ops::fused::kBcast32Kernel), std::string::npos);
  EXPECT_NE(bcast.find(ops::fused::kBcast64Kernel), std::string::npos);
}

// NVRTC runs without a GPU: every mode and dtype mix must compile for sm_90.
TEST(FusedCodegen, GeneratedSourceCompilesWithNvrtc) {
  ops::OpRegistry::global();  // registration installs the hook
  auto check = ops::fused::nvrtc_check_hook();
  if (!check) GTEST_SKIP() << "built without CUDA";
  auto p = parse_program(kEveryOp, 3);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  const std::vector<std::vector<DataType>> mixes = {{kF32, kF32, kF32}, {kF16, kF16, kF16}, {kBF16, kF32, kF16}};
  for (const auto& dts : mixes)
    for (DataType out : {kF32, kF16, kBF16})
      for (CodegenMode mode : {CodegenMode{true, 0u}, CodegenMode{true, 6u}, CodegenMode{false, 0u}}) {
        const std::string src = ops::fused::cuda_source(*p, dts, out, mode);
        auto r = check(src, 90);
        ASSERT_TRUE(r.ok()) << r.status().to_string() << "\n" << src;
        EXPECT_GT(*r, 0u);
      }
  // A single-input program with the most inputs the argument block holds.
  std::string many = "v1; t0 = Add(in0, in1)";
  for (int i = 2; i < ops::fused::kMaxInputs; ++i)
    many += "; t" + std::to_string(i - 1) + " = Add(t" + std::to_string(i - 2) + ", in" + std::to_string(i) + ")";
  auto pm = parse_program(many, ops::fused::kMaxInputs);
  ASSERT_TRUE(pm.ok()) << pm.status().to_string();
  std::vector<DataType> dts(ops::fused::kMaxInputs, kF16);
  for (CodegenMode mode : {CodegenMode{true, 0x8001u}, CodegenMode{false, 0u}}) {
    auto r = check(ops::fused::cuda_source(*pm, dts, kF16, mode), 90);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
  }
  // Non-finite immediates become bit patterns.
  auto pn = parse_program("v1; t0 = Clip(in0, nan, -inf); t1 = Max(t0, inf)", 1);
  ASSERT_TRUE(pn.ok()) << pn.status().to_string();
  auto rn = check(ops::fused::cuda_source(*pn, {kF32}, kF32, CodegenMode{true, 0u}), 90);
  ASSERT_TRUE(rn.ok()) << rn.status().to_string();
  // Compile errors come back with NVRTC's log.
  auto bad = check("extern \"C\" __global__ void k() { undeclared_thing(); }", 90);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("undeclared_thing"), std::string::npos) << bad.status().message();
}

// ---------------------------------------------------------------- CUDA kernel vs. reference (GPU only)

const char* kChain = "v1; t0 = Mul(in0, in1); t1 = Sigmoid(t0); t2 = Add(t1, in2); t3 = Gelu(t2); t4 = Mul(t3, 0.5)";

struct ShapeCase {
  std::vector<Dims> dims;
};

TEST(FusedElementwise, CudaKernelMatchesReference) {
  const std::vector<ShapeCase> shapes = {
      {{{1, 3, 7, 5}, {1, 3, 7, 5}, {1, 3, 7, 5}}},                 // flat, odd size (vector body + tail)
      {{{2, 3, 4, 5}, {}, {1}}},                                    // flat with scalars
      {{{2, 3, 4, 5}, {3, 1, 1}, {}}},                              // [N,C,H,W] with [C,1,1] and a scalar
      {{{3, 7, 5}, {7, 1}, {5}}},                                   // broadcast on several axes
      {{{5}, {4, 1}, {3, 1, 1}}},                                   // output larger than every input
      {{{2, 1, 3, 1, 2, 1, 2, 3}, {1, 2, 1, 2, 1, 3, 1, 1}, {3}}},  // rank 8
      {{{0, 3}, {3}, {}}},                                          // empty output
      {{{1000, 257}, {1000, 257}, {}}},                             // several blocks
  };
  for (const Tol& t : {Tol{kF32, 1e-5, 1e-6}, Tol{kF16, 1e-2, 1e-2}, Tol{kBF16, 2e-2, 2e-2}})
    for (const ShapeCase& s : shapes) {
      SCOPED_TRACE(std::string(dtype_name(t.dtype)) + " " + dims_to_string(s.dims[0]) + " " +
                   dims_to_string(s.dims[1]) + " " + dims_to_string(s.dims[2]));
      OpCase c = fused_case(kChain);
      for (const Dims& d : s.dims) c.input(t.dtype, d, -2, 2);
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels());
    }
}

TEST(FusedElementwise, CudaKernelHandlesMixedDtypesCastsAndEveryOp) {
  {
    OpCase c = fused_case("v1; t0 = Add(in0, in1); t1 = CastF16(t0); t2 = Mul(t1, in2)");
    c.input(kF32, {4, 9}).input(kF16, {9}).input(kBF16, {4, 1});
    EXPECT_GE(c.expect_all_kernels_match(1e-5, 1e-5), gpu_kernels());
  }
  {  // every opcode once (values stay finite over [-1, 1])
    OpCase c = fused_case(kEveryOp);
    c.input(kF32, {3, 33}, 0.1, 1).input(kF32, {33}, 0.1, 1).input(kF32, {3, 1}, 0.1, 1);
    EXPECT_GE(c.expect_all_kernels_match(1e-4, 1e-5), gpu_kernels());
  }
  {  // Pow with a general exponent, Max/Min NaN propagation
    OpCase c = fused_case("v1; t0 = Pow(in0, 1.5); t1 = Max(t0, in1); t2 = Min(t1, 0.75)");
    c.input(kF16, {2, 17}, 0, 2).input(kF16, {2, 17});
    EXPECT_GE(c.expect_all_kernels_match(1e-2, 1e-2), gpu_kernels());
  }
}

TEST(FusedElementwise, CudaKernelCachesCubinsOnDiskAndRewritesCorruptFiles) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no GPU";
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("kiln_fused_cache_test_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ScopedEnv cache_dir("KILN_CACHE_DIR", dir.c_str());
  // A program no other test uses; the second spelling has the same source but
  // another in-process key, so it goes to the disk cache.
  const std::string a = "v1; t0 = Mul(in0, 0.123456791); t1 = Tanh(t0); t2 = Add(t1, in1)";
  const std::string b = "v1;t0=Mul(in0,0.123456791);t1=Tanh(t0);t2=Add(t1,in1)";
  {
    OpCase c = fused_case(a);
    c.input(kF32, {4, 8}).input(kF32, {8});
    EXPECT_EQ(c.expect_all_kernels_match(1e-5, 1e-6), 1);
  }
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].extension(), ".cubin");
  { std::ofstream(files[0], std::ios::binary | std::ios::trunc) << "not a cubin"; }
  {
    OpCase c = fused_case(b);
    c.input(kF32, {4, 8}).input(kF32, {8});
    EXPECT_EQ(c.expect_all_kernels_match(1e-5, 1e-6), 1);
  }
  std::ifstream f(files[0], std::ios::binary);
  char magic[8] = {};
  f.read(magic, 8);
  EXPECT_EQ(std::string(magic, 8), "KILNCUB1");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kiln::test

// FusedElementwise programs: the opcode table, parsing with validation, printing,
// dtype propagation and the fp32 interpreter the reference kernel runs.
#include "ops/fused/fused_program.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string_view>

#include "base/half.h"

namespace kiln::ops::fused {

namespace {

constexpr EwOpInfo kOps[] = {
    {"Add", 2},      {"Sub", 2},      {"Mul", 2},      {"Div", 2},   {"Pow", 2},         {"Max", 2},
    {"Min", 2},      {"Neg", 1},      {"Abs", 1},      {"Relu", 1},  {"LeakyRelu", 2},   {"Sigmoid", 1},
    {"Tanh", 1},     {"Exp", 1},      {"Log", 1},      {"Sqrt", 1},  {"Reciprocal", 1},  {"Erf", 1},
    {"Clip", 3},     {"Gelu", 1},     {"GeluTanh", 1}, {"Swish", 2}, {"HardSigmoid", 3}, {"HardSwish", 1},
    {"Softplus", 1}, {"Softsign", 1}, {"Mish", 1},     {"Elu", 2},   {"Selu", 3},        {"CastF32", 1},
    {"CastF16", 1},  {"CastBF16", 1},
};
static_assert(std::size(kOps) == static_cast<size_t>(EwOp::kCount), "one table entry per opcode");

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// A non-negative decimal of at most 6 digits (larger indices are out of range anyway).
bool parse_index(std::string_view s, int& out) {
  if (s.empty() || s.size() > 6) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

std::string shown(std::string_view s) {
  std::string r(s.substr(0, 80));
  if (s.size() > 80) r += "...";
  return r;
}

std::string imm_text(float v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", static_cast<double>(v));
  return buf;
}

// Operand text: in<k>, t<j> or an fp32 number.
Result<Operand> parse_operand(std::string_view s, int num_inputs, int defined) {
  int k = 0;
  if (s.size() > 2 && s.substr(0, 2) == "in" && s[2] >= '0' && s[2] <= '9') {
    if (!parse_index(s.substr(2), k) || k >= num_inputs)
      return Status(ErrorCode::kInvalidModel,
                    "operand '" + shown(s) + "' names no input (the node has " + std::to_string(num_inputs) + ")");
    return Operand::input(k);
  }
  if (s.size() > 1 && s[0] == 't' && s[1] >= '0' && s[1] <= '9') {
    if (!parse_index(s.substr(1), k) || k >= defined)
      return Status(ErrorCode::kInvalidModel, "operand '" + shown(s) + "' is not an earlier temporary");
    return Operand::temp(k);
  }
  std::string num(s);
  char* end = nullptr;
  float v = num.empty() ? 0.f : std::strtof(num.c_str(), &end);
  if (num.empty() || end != num.c_str() + num.size())
    return Status(ErrorCode::kInvalidModel, "operand '" + shown(s) + "' is not in<k>, t<j> or a number");
  return Operand::immediate(v);
}

float round_f16(float v) { return static_cast<float>(Half(v)); }
float round_bf16(float v) { return static_cast<float>(BFloat16(v)); }
float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }  // NaN passes
float softplus(float x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }

// The scalar rules, written as the reference kernels of the unfused ops compute them in fp32.
float apply(EwOp op, float a, float b, float c) {
  switch (op) {
    case EwOp::kAdd:
      return a + b;
    case EwOp::kSub:
      return a - b;
    case EwOp::kMul:
      return a * b;
    case EwOp::kDiv:
      return a / b;
    // Pow's reference computes in double and rounds once.
    case EwOp::kPow:
      return static_cast<float>(std::pow(static_cast<double>(a), static_cast<double>(b)));
    case EwOp::kMax:
      return std::isnan(a) || std::isnan(b) ? a + b : (a < b ? b : a);
    case EwOp::kMin:
      return std::isnan(a) || std::isnan(b) ? a + b : (b < a ? b : a);
    case EwOp::kNeg:
      return -a;
    case EwOp::kAbs:
      return std::fabs(a);
    case EwOp::kRelu:
      return a < 0.0f ? 0.0f : a;
    case EwOp::kLeakyRelu:
      return a < 0.0f ? b * a : a;
    case EwOp::kSigmoid:
      return sigmoid(a);
    case EwOp::kTanh:
      return std::tanh(a);
    case EwOp::kExp:
      return std::exp(a);
    case EwOp::kLog:
      return std::log(a);
    case EwOp::kSqrt:
      return std::sqrt(a);
    case EwOp::kReciprocal:
      return 1.0f / a;
    case EwOp::kErf:
      return std::erf(a);
    case EwOp::kClip: {  // lo first, then hi: min > max gives max, as Clip's reference
      const float v = a < b ? b : a;
      return v > c ? c : v;
    }
    case EwOp::kGelu:
      return 0.5f * a * (1.0f + std::erf(a * static_cast<float>(M_SQRT1_2)));
    case EwOp::kGeluTanh:
      return 0.5f * a * (1.0f + std::tanh(0.7978845608028654f * (a + 0.044715f * a * a * a)));
    case EwOp::kSwish:
      return a * sigmoid(b * a);
    case EwOp::kHardSigmoid:
      return clamp01(b * a + c);
    case EwOp::kHardSwish:
      return a * clamp01(a / 6.0f + 0.5f);
    case EwOp::kSoftplus:
      return softplus(a);
    case EwOp::kSoftsign:
      return a / (1.0f + std::fabs(a));
    case EwOp::kMish:
      return a * std::tanh(softplus(a));
    case EwOp::kElu:
      return a < 0.0f ? b * std::expm1(a) : a;
    case EwOp::kSelu:
      return c * (a > 0.0f ? a : b * std::expm1(a));
    case EwOp::kCastF32:
      return a;
    case EwOp::kCastF16:
      return round_f16(a);
    case EwOp::kCastBF16:
      return round_bf16(a);
    case EwOp::kCount:
      break;
  }
  return a;
}

}  // namespace

const EwOpInfo& op_info(EwOp op) {
  static constexpr EwOpInfo kBad{"?", 0};
  auto i = static_cast<size_t>(op);
  return i < std::size(kOps) ? kOps[i] : kBad;
}

EwOp op_by_name(const std::string& name) {
  for (size_t i = 0; i < std::size(kOps); ++i)
    if (name == kOps[i].name) return static_cast<EwOp>(i);
  return EwOp::kCount;
}

bool Operand::operator==(const Operand& o) const {
  if (kind != o.kind) return false;
  if (kind == Kind::kImm) return std::memcmp(&imm, &o.imm, sizeof(float)) == 0;
  return index == o.index;
}

Result<Program> parse_program(const std::string& text, int num_inputs) {
  auto fail = [](const std::string& msg) {
    return Status(ErrorCode::kInvalidModel, "FusedElementwise program: " + msg);
  };
  std::vector<std::string_view> parts;
  std::string_view rest(text);
  while (true) {
    size_t semi = rest.find(';');
    parts.push_back(trim(rest.substr(0, semi)));
    if (semi == std::string_view::npos) break;
    rest.remove_prefix(semi + 1);
  }
  if (!parts.empty() && parts.back().empty()) parts.pop_back();  // a trailing ';'
  if (parts.empty() || parts[0] != kProgramVersion)
    return fail(std::string("must start with the version tag '") + kProgramVersion + ";', got '" +
                shown(parts.empty() ? std::string_view() : parts[0]) + "'");
  if (parts.size() < 2) return fail("has no instructions");
  if (parts.size() - 1 > static_cast<size_t>(kMaxInstructions))
    return fail("has " + std::to_string(parts.size() - 1) + " instructions, more than " +
                std::to_string(kMaxInstructions));
  Program p;
  for (size_t i = 1; i < parts.size(); ++i) {
    const int idx = static_cast<int>(i - 1);
    std::string_view s = parts[i];
    std::string where = "instruction " + std::to_string(idx) + " ('" + shown(s) + "'): ";
    size_t eq = s.find('=');
    int lhs = -1;
    if (eq == std::string_view::npos) return fail(where + "expected 't" + std::to_string(idx) + " = Op(...)'");
    std::string_view name = trim(s.substr(0, eq));
    if (name.size() < 2 || name[0] != 't' || !parse_index(name.substr(1), lhs) || lhs != idx)
      return fail(where + "must define t" + std::to_string(idx));
    std::string_view rhs = trim(s.substr(eq + 1));
    size_t open = rhs.find('(');
    if (open == std::string_view::npos || rhs.back() != ')') return fail(where + "expected Op(operands)");
    std::string opname(trim(rhs.substr(0, open)));
    EwOp op = op_by_name(opname);
    if (op == EwOp::kCount) return fail(where + "unknown op '" + shown(opname) + "'");
    Instr ins;
    ins.op = op;
    std::string_view args = rhs.substr(open + 1, rhs.size() - open - 2);
    if (!trim(args).empty()) {
      while (true) {
        size_t comma = args.find(',');
        auto r = parse_operand(trim(args.substr(0, comma)), num_inputs, idx);
        if (!r.ok()) return fail(where + r.status().message());
        ins.args.push_back(*r);
        if (comma == std::string_view::npos) break;
        args.remove_prefix(comma + 1);
      }
    }
    const int arity = op_info(op).arity;
    if (static_cast<int>(ins.args.size()) != arity)
      return fail(where + opname + " takes " + std::to_string(arity) + " operand(s), got " +
                  std::to_string(ins.args.size()));
    bool reads_tensor = false;
    for (const Operand& a : ins.args) reads_tensor = reads_tensor || a.kind != Operand::Kind::kImm;
    if (!reads_tensor) return fail(where + "needs an input or temporary operand");
    p.code.push_back(std::move(ins));
  }
  return p;
}

std::string print_program(const Program& p) {
  std::string s = kProgramVersion;
  for (size_t i = 0; i < p.code.size(); ++i) {
    const Instr& ins = p.code[i];
    s += "; t" + std::to_string(i) + " = " + op_info(ins.op).name + "(";
    for (size_t j = 0; j < ins.args.size(); ++j) {
      const Operand& a = ins.args[j];
      if (j) s += ", ";
      if (a.kind == Operand::Kind::kInput)
        s += tag("in", a.index);
      else if (a.kind == Operand::Kind::kTemp)
        s += tag("t", a.index);
      else
        s += imm_text(a.imm);
    }
    s += ")";
  }
  return s;
}

DataType program_dtype(const Program& p, const std::vector<DataType>& inputs) {
  std::vector<DataType> t(p.code.size(), DataType::kUndefined);
  for (size_t i = 0; i < p.code.size(); ++i) {
    const Instr& ins = p.code[i];
    if (ins.op == EwOp::kCastF32)
      t[i] = DataType::kFloat32;
    else if (ins.op == EwOp::kCastF16)
      t[i] = DataType::kFloat16;
    else if (ins.op == EwOp::kCastBF16)
      t[i] = DataType::kBFloat16;
    else
      for (const Operand& a : ins.args) {
        if (a.kind == Operand::Kind::kImm) continue;
        if (a.kind == Operand::Kind::kInput)
          t[i] = static_cast<size_t>(a.index) < inputs.size() ? inputs[a.index] : DataType::kUndefined;
        else
          t[i] = static_cast<size_t>(a.index) < i ? t[a.index] : DataType::kUndefined;
        break;
      }
  }
  return t.empty() ? DataType::kUndefined : t.back();
}

void eval_block(const Program& p, const float* const* in, int64_t count, float* out, std::vector<float>& scratch) {
  const size_t n = p.code.size();
  scratch.resize(n * static_cast<size_t>(count));
  for (size_t i = 0; i < n; ++i) {
    const Instr& ins = p.code[i];
    // Each operand is a column with stride 1, or an immediate with stride 0.
    const float* col[3] = {nullptr, nullptr, nullptr};
    int64_t step[3] = {0, 0, 0};
    for (size_t j = 0; j < ins.args.size() && j < 3; ++j) {
      const Operand& a = ins.args[j];
      if (a.kind == Operand::Kind::kInput) {
        col[j] = in[a.index];
        step[j] = 1;
      } else if (a.kind == Operand::Kind::kTemp) {
        col[j] = scratch.data() + static_cast<size_t>(a.index) * static_cast<size_t>(count);
        step[j] = 1;
      } else {
        col[j] = &a.imm;
      }
    }
    float* dst = i + 1 == n ? out : scratch.data() + i * static_cast<size_t>(count);
    for (int64_t e = 0; e < count; ++e) {
      const float a = col[0][e * step[0]];
      const float b = col[1] ? col[1][e * step[1]] : 0.f;
      const float c = col[2] ? col[2][e * step[2]] : 0.f;
      dst[e] = apply(ins.op, a, b, c);
    }
  }
}

NvrtcCheckFn& nvrtc_check_hook() {
  static NvrtcCheckFn fn = nullptr;
  return fn;
}

}  // namespace kiln::ops::fused

// Comparisons (Equal, Less, LessOrEqual, Greater, GreaterOrEqual), logical ops
// on bool (And, Or, Xor) and bitwise ops on integers (BitwiseAnd/Or/Xor).
#include "ops/binary/binary.h"

namespace kiln::ops {
namespace {

#define KILN_BINARY_OP(Name, types, bool_out, expr) \
  struct Name {                                     \
    static constexpr uint32_t kTypes = types;       \
    static constexpr bool kBoolOut = bool_out;      \
    template <class C>                              \
    auto operator()(C a, C b) const {               \
      return expr;                                  \
    }                                               \
  };

// 16-bit floats compare in float, so NaN is unequal to everything.
KILN_BINARY_OP(Equal, kTypesAll, true, a == b)
KILN_BINARY_OP(Less, kTypesNumeric, true, a < b)
KILN_BINARY_OP(LessOrEqual, kTypesNumeric, true, a <= b)
KILN_BINARY_OP(Greater, kTypesNumeric, true, a > b)
KILN_BINARY_OP(GreaterOrEqual, kTypesNumeric, true, a >= b)
KILN_BINARY_OP(And, kTypesBool, true, a&& b)
KILN_BINARY_OP(Or, kTypesBool, true, a || b)
KILN_BINARY_OP(Xor, kTypesBool, true, a != b)
KILN_BINARY_OP(BitwiseAnd, kTypesInt, false, static_cast<C>(a& b))
KILN_BINARY_OP(BitwiseOr, kTypesInt, false, static_cast<C>(a | b))
KILN_BINARY_OP(BitwiseXor, kTypesInt, false, static_cast<C>(a ^ b))
#undef KILN_BINARY_OP

}  // namespace

void register_logical_ops(OpRegistry& r) {
  r.add(binary_op_def<Equal>("Equal"));
  r.add(binary_op_def<Less>("Less"));
  r.add(binary_op_def<LessOrEqual>("LessOrEqual"));
  r.add(binary_op_def<Greater>("Greater"));
  r.add(binary_op_def<GreaterOrEqual>("GreaterOrEqual"));
  r.add(binary_op_def<And>("And"));
  r.add(binary_op_def<Or>("Or"));
  r.add(binary_op_def<Xor>("Xor"));
  r.add(binary_op_def<BitwiseAnd>("BitwiseAnd"));
  r.add(binary_op_def<BitwiseOr>("BitwiseOr"));
  r.add(binary_op_def<BitwiseXor>("BitwiseXor"));
}

}  // namespace kiln::ops

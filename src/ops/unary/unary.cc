// Pointwise math: Abs, Neg, Exp, Log, Sqrt, Reciprocal, Floor, Ceil, Round, Sign,
// the trigonometric and hyperbolic functions and Erf.
#include "ops/unary/unary.h"

#include <cmath>

namespace kiln::ops {
namespace {

struct Abs {
  static constexpr uint32_t kTypes = kTypesNumeric;
  template <class C>
  C operator()(C x) const {
    if constexpr (std::is_floating_point_v<C>) return std::fabs(x);
    else if constexpr (std::is_unsigned_v<C>) return x;
    else return x < 0 ? negate(x) : x;
  }
};
struct Neg {
  static constexpr uint32_t kTypes = kTypesSigned;
  template <class C>
  C operator()(C x) const {
    return negate(x);
  }
};
struct Sign {
  static constexpr uint32_t kTypes = kTypesNumeric;
  template <class C>
  C operator()(C x) const {
    if constexpr (std::is_floating_point_v<C>)
      if (std::isnan(x)) return x;
    return x > 0 ? C(1) : (x < 0 ? C(-1) : C(0));
  }
};

// Float-only functions map directly onto <cmath>.
#define KILN_FLOAT_UNARY(Name, expr)                \
  struct Name {                                     \
    static constexpr uint32_t kTypes = kTypesFloat; \
    template <class C>                              \
    C operator()(C x) const {                       \
      return expr;                                  \
    }                                               \
  };
KILN_FLOAT_UNARY(Exp, std::exp(x))
KILN_FLOAT_UNARY(Log, std::log(x))
KILN_FLOAT_UNARY(Sqrt, std::sqrt(x))
KILN_FLOAT_UNARY(Reciprocal, C(1) / x)
KILN_FLOAT_UNARY(Floor, std::floor(x))
KILN_FLOAT_UNARY(Ceil, std::ceil(x))
// ONNX Round is half-to-even; nearbyint uses the default round-to-nearest-even mode.
KILN_FLOAT_UNARY(Round, std::nearbyint(x))
KILN_FLOAT_UNARY(Sin, std::sin(x))
KILN_FLOAT_UNARY(Cos, std::cos(x))
KILN_FLOAT_UNARY(Tan, std::tan(x))
KILN_FLOAT_UNARY(Asin, std::asin(x))
KILN_FLOAT_UNARY(Acos, std::acos(x))
KILN_FLOAT_UNARY(Atan, std::atan(x))
KILN_FLOAT_UNARY(Sinh, std::sinh(x))
KILN_FLOAT_UNARY(Cosh, std::cosh(x))
KILN_FLOAT_UNARY(Tanh, std::tanh(x))
KILN_FLOAT_UNARY(Asinh, std::asinh(x))
KILN_FLOAT_UNARY(Acosh, std::acosh(x))
KILN_FLOAT_UNARY(Atanh, std::atanh(x))
#undef KILN_FLOAT_UNARY

// Erf admits integer inputs (opset 13); they are computed in double and truncated.
struct Erf {
  static constexpr uint32_t kTypes = kTypesNumeric;
  template <class C>
  C operator()(C x) const {
    if constexpr (std::is_floating_point_v<C>) return std::erf(x);
    else return convert_value<C>(std::erf(static_cast<double>(x)));
  }
};

}  // namespace

void register_unary_math_ops(OpRegistry& r) {
  r.add(unary_op_def<Abs>("Abs"));
  r.add(unary_op_def<Neg>("Neg"));
  r.add(unary_op_def<Sign>("Sign"));
  r.add(unary_op_def<Exp>("Exp"));
  r.add(unary_op_def<Log>("Log"));
  r.add(unary_op_def<Sqrt>("Sqrt"));
  r.add(unary_op_def<Reciprocal>("Reciprocal"));
  r.add(unary_op_def<Floor>("Floor"));
  r.add(unary_op_def<Ceil>("Ceil"));
  r.add(unary_op_def<Round>("Round"));
  r.add(unary_op_def<Sin>("Sin"));
  r.add(unary_op_def<Cos>("Cos"));
  r.add(unary_op_def<Tan>("Tan"));
  r.add(unary_op_def<Asin>("Asin"));
  r.add(unary_op_def<Acos>("Acos"));
  r.add(unary_op_def<Atan>("Atan"));
  r.add(unary_op_def<Sinh>("Sinh"));
  r.add(unary_op_def<Cosh>("Cosh"));
  r.add(unary_op_def<Tanh>("Tanh"));
  r.add(unary_op_def<Asinh>("Asinh"));
  r.add(unary_op_def<Acosh>("Acosh"));
  r.add(unary_op_def<Atanh>("Atanh"));
  r.add(unary_op_def<Erf>("Erf"));
}

void register_unary_ops(OpRegistry& r) {
  register_unary_math_ops(r);
  register_activation_ops(r);
  register_unary_misc_ops(r);
}

}  // namespace kiln::ops

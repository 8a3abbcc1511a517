// The types of the values a subgraph body reads from its enclosing graphs by name.
// Bodies (If branches, Loop and Scan bodies, functions inlined into them) often leave
// their values untyped; inferring an If's output dtype then needs the types of the outer
// values the branch reads (ONNX's expanded AffineGrid splits an outer `size` in both
// branches). Shape propagation (runtime/shape_eval.cc) opens a scope over the graph it
// walks while it infers a node with bodies; body inference (control.cc) opens one over
// each body it walks, so nested bodies see every enclosing graph, innermost first.
#pragma once

#include <functional>
#include <string>

#include "ops/op.h"

namespace kiln::ops {

class OuterTypes {
 public:
  /// `find` gives the type of the value of that name in this scope, or null.
  explicit OuterTypes(std::function<const TensorType*(const std::string&)> find)
      : find_(std::move(find)), parent_(current()) {
    current() = this;
  }
  ~OuterTypes() { current() = parent_; }
  OuterTypes(const OuterTypes&) = delete;
  OuterTypes& operator=(const OuterTypes&) = delete;

  /// The innermost open scope's type for `name` (null when none has it).
  static const TensorType* lookup(const std::string& name) {
    for (const OuterTypes* s = current(); s; s = s->parent_)
      if (const TensorType* t = s->find_(name); t && t->dtype != DataType::kUndefined) return t;
    return nullptr;
  }

 private:
  static const OuterTypes*& current() {
    static thread_local const OuterTypes* top = nullptr;
    return top;
  }
  std::function<const TensorType*(const std::string&)> find_;
  const OuterTypes* parent_;
};

}  // namespace kiln::ops

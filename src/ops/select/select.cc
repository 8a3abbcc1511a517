// The select family: Where, Cast / CastLike, Dropout.
#include "ops/op.h"

namespace kiln::ops {

void register_where_op(OpRegistry& r);
void register_cast_ops(OpRegistry& r);
void register_dropout_op(OpRegistry& r);

void register_select_ops(OpRegistry& r) {
  register_where_op(r);
  register_cast_ops(r);
  register_dropout_op(r);
}

}  // namespace kiln::ops

// Registration hooks of the reshape family's other files.
#pragma once

#include "ops/op.h"

namespace kiln::ops::movement {

void add_transpose_ops(OpRegistry& r);
void add_shape_ops(OpRegistry& r);

}  // namespace kiln::ops::movement

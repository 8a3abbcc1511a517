// Registration hooks of the spatial family (one per file).
#pragma once

#include "ops/op.h"

namespace kiln::ops {

void add_col2im_op(OpRegistry& r);
void add_affine_grid_op(OpRegistry& r);
void add_deform_conv_op(OpRegistry& r);

}  // namespace kiln::ops

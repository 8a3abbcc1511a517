// The spatial family: Col2Im, AffineGrid, DeformConv.
#include "ops/spatial/spatial_ops.h"

namespace kiln::ops {

void register_spatial_ops(OpRegistry& r) {
  add_col2im_op(r);
  add_affine_grid_op(r);
  add_deform_conv_op(r);
}

}  // namespace kiln::ops

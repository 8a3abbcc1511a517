// Registration hooks of the generate family's other files.
#pragma once

#include "ops/op.h"

namespace kiln::ops::movement {

void add_range_ops(OpRegistry& r);
void add_space_depth_ops(OpRegistry& r);
void add_center_crop_pad_ops(OpRegistry& r);

}  // namespace kiln::ops::movement

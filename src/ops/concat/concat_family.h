// Registration hooks of the concat family's other files.
#pragma once

#include "ops/op.h"

namespace kiln::ops::movement {

void add_split_ops(OpRegistry& r);
void add_tile_ops(OpRegistry& r);
void add_pad_ops(OpRegistry& r);
void add_slice_ops(OpRegistry& r);

}  // namespace kiln::ops::movement

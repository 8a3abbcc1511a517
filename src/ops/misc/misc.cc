// Registers the misc family: Einsum, NonMaxSuppression, GridSample, RoiAlign, Det.
#include "ops/op.h"

namespace kiln::ops {

void register_einsum_ops(OpRegistry& r);
void register_non_max_suppression_ops(OpRegistry& r);
void register_grid_sample_ops(OpRegistry& r);
void register_roi_align_ops(OpRegistry& r);
void register_det_ops(OpRegistry& r);

void register_misc_ops(OpRegistry& r) {
  register_einsum_ops(r);
  register_non_max_suppression_ops(r);
  register_grid_sample_ops(r);
  register_roi_align_ops(r);
  register_det_ops(r);
}

}  // namespace kiln::ops

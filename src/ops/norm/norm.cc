// The normalization family: batch / instance / group / layer / RMS / Lp / MVN / LRN.
#include "ops/norm/norm_internal.h"

namespace kiln::ops {

void register_norm_ops(OpRegistry& r) {
  norm::register_batch_norm_ops(r);
  norm::register_layer_norm_ops(r);
  norm::register_other_norm_ops(r);
}

}  // namespace kiln::ops

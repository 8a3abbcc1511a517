// Registration hooks of the normalization family (one per source file).
#pragma once

#include "ops/op.h"

namespace kiln::ops::norm {

void register_batch_norm_ops(OpRegistry& r);   // BatchNormalization, InstanceNormalization, GroupNormalization
void register_layer_norm_ops(OpRegistry& r);   // LayerNormalization, RMSNormalization, SkipLayerNormalization
void register_other_norm_ops(OpRegistry& r);   // LpNormalization, MeanVarianceNormalization, LRN

}  // namespace kiln::ops::norm

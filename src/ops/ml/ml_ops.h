// Registration hooks of the ml family (one per file).
#pragma once

#include "ops/op.h"

namespace kiln::ops {

void add_tree_ensemble_op(OpRegistry& r);
void add_tfidf_op(OpRegistry& r);

}  // namespace kiln::ops

// Optimization profiles from the command line's shape options.
#pragma once

#include <vector>

#include "app.h"

namespace kiln::cli {

/// One profile per --min/--opt/--max-shapes group (or per --shapes for `build`, or one
/// from `run_shapes`). Dynamic inputs without a shape get their dynamic dims set to 1,
/// with a warning. Empty when the network has no dynamic input.
Result<std::vector<OptimizationProfile>> make_profiles(const NetworkDefinition& net, const BuildOptions& o,
                                                       const ShapeMap& run_shapes, Logger& logger);

}  // namespace kiln::cli

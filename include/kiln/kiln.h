// kiln: the whole public C++ API.
#pragma once

#include "kiln/builder.h"
#include "kiln/logger.h"
#include "kiln/network.h"
#include "kiln/onnx_parser.h"
#include "kiln/runtime.h"
#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln {
/// kiln's version, "MAJOR.MINOR.PATCH".
const char* version_string();
}  // namespace kiln

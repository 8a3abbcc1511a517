// oneDNN glue shared by the CPU fast kernels: one engine per process and a
// stream per calling thread. Only built where CMake found oneDNN (KILN_HAVE_DNNL).
#pragma once

#ifdef KILN_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>

#include <string>

#include "kiln/status.h"

namespace kiln::cpu {

/// The process-wide CPU engine.
dnnl::engine& dnnl_engine();
/// A stream on that engine, one per calling thread.
dnnl::stream& dnnl_stream();
/// A Status for an error oneDNN threw, naming what was being done.
Status dnnl_status(const dnnl::error& e, const std::string& what);

}  // namespace kiln::cpu
#endif

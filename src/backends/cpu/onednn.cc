#include "backends/cpu/onednn.h"

#ifdef KILN_HAVE_DNNL
namespace kiln::cpu {

dnnl::engine& dnnl_engine() {
  static dnnl::engine* eng = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *eng;
}

dnnl::stream& dnnl_stream() {
  thread_local dnnl::stream s(dnnl_engine());
  return s;
}

Status dnnl_status(const dnnl::error& e, const std::string& what) {
  return Status(ErrorCode::kInternal, what + ": oneDNN error " + std::to_string(static_cast<int>(e.status)) + " (" +
                                          e.what() + ")");
}

}  // namespace kiln::cpu
#endif

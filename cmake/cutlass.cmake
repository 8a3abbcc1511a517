# CUTLASS's headers for src/ops/matmul/norm_gemm_sm90a.cu: header-only, unpacked by setup.sh from
# PyPI's nvidia-cutlass into build/third_party/cutlass-<version>/ (include/ and util/include/).
# Without them that file compiles to stubs (norm_gemm::built() is false) and nothing else changes.
set(KILN_CUTLASS_DIR "" CACHE PATH "CUTLASS headers: a folder with include/cutlass/cutlass.h and util/include (found automatically)")
if(NOT KILN_CUTLASS_DIR)
  file(GLOB _kiln_cutlass_dirs LIST_DIRECTORIES true ${PROJECT_SOURCE_DIR}/build/third_party/cutlass-*)
  foreach(_d IN LISTS _kiln_cutlass_dirs)
    if(EXISTS ${_d}/include/cutlass/cutlass.h AND EXISTS ${_d}/util/include/cutlass/util/packed_stride.hpp)
      set(KILN_CUTLASS_DIR ${_d})
    endif()
  endforeach()
endif()

# kiln_use_cutlass(<source>...): those sources see CUTLASS (KILN_HAVE_CUTLASS=1, built with NDEBUG:
# CUTLASS's device asserts would make ptxas serialize every wgmma).
function(kiln_use_cutlass)
  if(KILN_CUTLASS_DIR)
    set_source_files_properties(${ARGN} PROPERTIES
      COMPILE_DEFINITIONS "KILN_HAVE_CUTLASS=1;NDEBUG"
      INCLUDE_DIRECTORIES "${KILN_CUTLASS_DIR}/include;${KILN_CUTLASS_DIR}/util/include")
  endif()
endfunction()

if(KILN_CUTLASS_DIR)
  message(STATUS "kiln: CUTLASS headers from ${KILN_CUTLASS_DIR}")
else()
  message(STATUS "kiln: CUTLASS headers not found (setup.sh unpacks them): norm_gemm kernels left out")
endif()

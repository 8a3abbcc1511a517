# The CUDA backend: ON wherever nvcc is found (KILN_WITH_CUDA=AUTO). Its sources
# (src/backends/cuda/*.cu|*.cc and every src/ops/<family>/*_cuda.cu) are compiled
# into kiln_core; the headers the rest of the core includes (api.h, env.h,
# node_runner.h) never include CUDA headers. Without nvcc, src/backends/cuda_stub/
# implements the same headers: no devices, and errors that say why.
set(KILN_HAVE_CUDA OFF)
set(KILN_CUDA_SOURCES "")
if(NOT KILN_WITH_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    find_path(KILN_CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/include /usr/local/cuda/include)
    find_library(KILN_CUDNN_LIBRARY cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/lib/x86_64-linux-gnu)
    if(NOT KILN_CUDNN_INCLUDE_DIR OR NOT KILN_CUDNN_LIBRARY)
      if(KILN_WITH_CUDA STREQUAL "ON")
        message(FATAL_ERROR "KILN_WITH_CUDA=ON but cuDNN (cudnn.h, libcudnn) was not found")
      endif()
      message(STATUS "kiln: CUDA backend OFF (nvcc found, cuDNN not found)")
    else()
      set(KILN_HAVE_CUDA ON)
    endif()
  elseif(KILN_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "KILN_WITH_CUDA=ON but no CUDA compiler was found")
  endif()
endif()
if(KILN_HAVE_CUDA)
  set(CMAKE_CUDA_STANDARD 17)
  file(GLOB KILN_CUDA_SOURCES CONFIGURE_DEPENDS src/backends/cuda/*.cu src/backends/cuda/*.cc src/ops/*/*_cuda.cu)
  list(FILTER KILN_CUDA_SOURCES EXCLUDE REGEX "_test\\.(cc|cu)$")
  message(STATUS "kiln: CUDA backend ON (sm_${CMAKE_CUDA_ARCHITECTURES}, cuDNN ${KILN_CUDNN_LIBRARY})")
else()
  # Without CUDA the device layer is a stub: no devices, clear errors.
  file(GLOB KILN_CUDA_SOURCES CONFIGURE_DEPENDS src/backends/cuda_stub/*.cc)
  message(STATUS "kiln: CUDA backend OFF")
endif()

# Called once kiln_core exists.
function(kiln_link_cuda target)
  if(KILN_HAVE_CUDA)
    target_include_directories(${target} PRIVATE ${KILN_CUDNN_INCLUDE_DIR})
    target_link_libraries(${target} PUBLIC CUDA::cudart_static CUDA::cublasLt CUDA::cublas ${KILN_CUDNN_LIBRARY})
    # NVRTC compiles the fused elementwise kernels at run time (src/ops/fused/fused_cuda.cu);
    # it needs no driver, so the binary still loads where libcuda is absent.
    target_link_libraries(${target} PUBLIC CUDA::nvrtc)
    # nvcc flags `s = f();` of a [[nodiscard]] type as discarded; it is not.
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-diag-suppress=2810 --expt-relaxed-constexpr>)
  endif()
endfunction()

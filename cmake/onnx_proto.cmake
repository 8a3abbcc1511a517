# Compiles onnx.proto (as shipped by the `onnx` Python package, or Debian's
# libonnx-dev) into a static library. No hand-written protobuf decoder.
set(KILN_ONNX_PROTO "" CACHE FILEPATH "Path to onnx.proto (found automatically)")
if(NOT KILN_ONNX_PROTO)
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_FOUND)
    execute_process(
      COMMAND ${Python3_EXECUTABLE} -c "import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), 'onnx.proto'))"
      OUTPUT_VARIABLE _onnx_proto OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(EXISTS "${_onnx_proto}")
      set(KILN_ONNX_PROTO "${_onnx_proto}")
    endif()
  endif()
  if(NOT KILN_ONNX_PROTO AND EXISTS /usr/include/onnx/onnx.proto)
    set(KILN_ONNX_PROTO /usr/include/onnx/onnx.proto)
  endif()
endif()
if(NOT KILN_ONNX_PROTO)
  message(FATAL_ERROR "onnx.proto not found: pip install onnx (see requirements.txt) or set KILN_ONNX_PROTO")
endif()
message(STATUS "kiln: onnx.proto from ${KILN_ONNX_PROTO}")

set(_gen ${CMAKE_CURRENT_BINARY_DIR}/generated/onnx)
file(MAKE_DIRECTORY ${_gen})
# Copy so the generated header is always included as "onnx/onnx.pb.h".
configure_file(${KILN_ONNX_PROTO} ${_gen}/onnx.proto COPYONLY)
add_custom_command(
  OUTPUT ${_gen}/onnx.pb.cc ${_gen}/onnx.pb.h
  COMMAND ${Protobuf_PROTOC_EXECUTABLE} --proto_path=${CMAKE_CURRENT_BINARY_DIR}/generated
          --cpp_out=${CMAKE_CURRENT_BINARY_DIR}/generated ${_gen}/onnx.proto
  DEPENDS ${_gen}/onnx.proto
  COMMENT "protoc onnx.proto")
add_library(kiln_onnx_proto STATIC ${_gen}/onnx.pb.cc)
target_include_directories(kiln_onnx_proto SYSTEM PUBLIC ${CMAKE_CURRENT_BINARY_DIR}/generated ${Protobuf_INCLUDE_DIRS})
target_link_libraries(kiln_onnx_proto PUBLIC ${Protobuf_LIBRARIES})
target_compile_options(kiln_onnx_proto PRIVATE -w)

// kiln build: ONNX -> engine file, then a short summary of what was built.
#include <cstdio>
#include <iostream>

#include "app.h"
#include "cli_util.h"

namespace kiln::cli {

Status run_build(const BuildCmd& c) {
  CliLogger logger(c.build.verbose);
  BuildInfo info;
  KILN_ASSIGN_OR_RETURN(auto bytes, build_from_onnx(c.model, c.build, {}, logger, &info));
  KILN_RETURN_IF_ERROR(write_file(c.output, bytes.data(), bytes.size()));

  // Read the engine back: proves the file loads and gives the numbers for the summary.
  Runtime runtime(logger);
  auto engine = runtime.deserialize(bytes.data(), bytes.size());
  if (!engine.ok()) return engine.status().with_context("the engine written to '" + c.output + "' does not load");
  const Engine& e = *engine.value();
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.2f s", info.seconds);
  std::cout << "built " << c.output << " from " << c.model << "\n"
            << "  engine size:       " << format_bytes(bytes.size()) << " (" << bytes.size() << " bytes)\n"
            << "  layers:            " << e.num_layers() << "\n"
            << "  weights:           " << format_bytes(e.weight_bytes()) << "\n"
            << "  activation arena:  " << format_bytes(e.activation_bytes()) << " (" << e.activation_bytes()
            << " bytes)\n"
            << "  profiles:          " << e.num_optimization_profiles() << "\n"
            << "  build time:        " << secs << "\n";
  for (const auto& name : engine_inputs(e))
    std::cout << "  input  " << name << ": " << dtype_name(e.get_tensor_dtype(name)) << " "
              << format_dims(e.get_tensor_shape(name)) << "\n";
  for (const auto& name : engine_outputs(e))
    std::cout << "  output " << name << ": " << dtype_name(e.get_tensor_dtype(name)) << " "
              << format_dims(e.get_tensor_shape(name)) << "\n";
  return Status();
}

}  // namespace kiln::cli

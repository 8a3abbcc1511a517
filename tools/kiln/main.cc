// The kiln command: build, run, bench and inspect engines (trtexec's jobs, split
// into subcommands).
#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>
#include <new>

#include "app.h"

namespace kiln::cli {

// Repeatable options take one value per occurrence (`--input a=x.npy --input b=y.npy`),
// so a positional after them is never swallowed as another value.
void add_build_options(CLI::App* app, BuildOptions& o, bool build_cmd) {
  const char* g = "Build options";
  if (build_cmd)
    app->add_option("--shapes", o.shapes,
                    "Fixed input shapes name:1x3x224x224,name2:1x128 (min=opt=max); repeat for several profiles")
        ->group(g)
        ->allow_extra_args(false);
  app->add_option("--min-shapes", o.min_shapes, "Minimum input shapes, name:dims,...; repeat once per profile")
      ->group(g)
      ->allow_extra_args(false);
  app->add_option("--opt-shapes", o.opt_shapes, "Shapes to optimize for, name:dims,...; repeat once per profile")
      ->group(g)
      ->allow_extra_args(false);
  app->add_option("--max-shapes", o.max_shapes, "Maximum input shapes, name:dims,...; repeat once per profile")
      ->group(g)
      ->allow_extra_args(false);
  app->add_flag("--fp16", o.fp16, "Allow float16 kernels")->group(g);
  app->add_flag("--bf16", o.bf16, "Allow bfloat16 kernels")->group(g);
  app->add_flag("--int8", o.int8, "Allow int8 kernels")->group(g);
  app->add_flag("--fp8", o.fp8, "Allow fp8 kernels")->group(g);
  app->add_flag("--tf32", o.tf32, "Allow TF32 matmul/conv (CUDA)")->group(g);
  app->add_flag("--no-tf32", o.no_tf32, "Disallow TF32")->group(g);
  app->add_flag("--strict-types", o.strict_types, "Obey the requested precisions even when slower")->group(g);
  app->add_option("--workspace", o.workspace_mib, "Workspace limit in MiB (0: default)")->group(g);
  app->add_option("--opt-level", o.opt_level, "Optimization level 0 (fast build) .. 5 (widest search)")
      ->group(g)
      ->capture_default_str();
  app->add_option("--timing-cache", o.timing_cache,
                  "CUDA: reuse tactic timings from FILE (created if missing, updated after the build)")
      ->group(g);
  app->add_option("--device", o.device, "Target device: cpu, cuda, cuda:N or N")->group(g)->capture_default_str();
  app->add_option("--input-io-formats", o.input_io, "Float inputs: fp32, or fp16/bf16 with --fp16/--bf16 (':chw' accepted)")
      ->group(g)
      ->capture_default_str();
  app->add_option("--output-io-formats", o.output_io, "Float outputs: fp32, or fp16/bf16 with --fp16/--bf16")
      ->group(g)
      ->capture_default_str();
  app->add_option("--metadata", o.metadata, "key=value stored in the engine (repeatable)")
      ->group(g)
      ->allow_extra_args(false);
  app->add_flag("-v,--verbose", o.verbose, "Print kiln's informational messages");
  app->add_flag("--no-progress", o.no_progress, "No build progress bar (shown only when stderr is a terminal)");
}

namespace {

int report(const Status& s) {
  if (s.ok()) return 0;
  std::cerr << "kiln: error: " << s.to_string() << std::endl;
  return 1;
}

int main_impl(int argc, char** argv) {
  CLI::App app{"kiln: build, run, benchmark and inspect inference engines", "kiln"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("kiln ") + version_string());

  BuildCmd build;
  auto* b = app.add_subcommand("build", "Build an engine file from an ONNX model");
  b->add_option("model", build.model, "ONNX model")->required();
  b->add_option("-o,--output", build.output, "Engine file to write")->required();
  add_build_options(b, build.build, true);

  RunCmd run;
  auto* r = app.add_subcommand("run", "Run an engine (or an ONNX model built in memory) once");
  r->add_option("model", run.model, "Engine file or ONNX model")->required();
  r->add_option("--input", run.inputs, "name=file.npy (repeatable); random inputs if none")->allow_extra_args(false);
  r->add_option("--shapes", run.shapes, "Input shapes name:dims,... for random inputs and dynamic dims")
      ->allow_extra_args(false);
  r->add_option("--output-dir", run.output_dir, "Write each output to DIR/<name>.npy");
  r->add_option("--seed", run.seed, "Seed of the random inputs")->capture_default_str();
  r->add_option("--profile", run.profile, "Optimization profile (default: the first that holds the shapes)");
  r->add_option("--print", run.print_values, "How many values of each output to print")->capture_default_str();
  add_build_options(r, run.build, false);

  BenchCmd bench;
  auto* be = app.add_subcommand("bench", "Measure latency and throughput");
  be->add_option("model", bench.model, "Engine file or ONNX model")->required();
  be->add_option("--input", bench.inputs, "name=file.npy (repeatable); random inputs if none")->allow_extra_args(false);
  be->add_option("--shapes", bench.shapes, "Input shapes name:dims,...")->allow_extra_args(false);
  be->add_option("--warmup", bench.warmup, "Warm-up runs (default: 10 runs or 200 ms, whichever is first)");
  be->add_option("--iterations", bench.iterations, "Timed runs (default: at least 10, for at least 3 s)");
  be->add_option("--duration", bench.duration, "Run for at least this many seconds");
  be->add_option("--json", bench.json, "Also write the summary to FILE as JSON");
  be->add_option("--seed", bench.seed, "Seed of the random inputs")->capture_default_str();
  be->add_option("--profile", bench.profile, "Optimization profile (default: the first that holds the shapes)");
  be->add_flag("--cuda-graph", bench.cuda_graph, "CUDA engines: capture the layers once and replay a CUDA graph");
  be->add_flag("--no-data-transfers", bench.no_data_transfers,
               "CUDA engines: keep inputs and outputs in device memory (no host copies)");
  be->add_option("--streams", bench.streams, "CUDA engines: contexts running concurrently, one stream each")
      ->capture_default_str();
  be->add_flag("--dump-profile", bench.dump_profile, "Print the time of each layer (one extra profiled run)");
  be->add_option("--export-profile", bench.export_profile, "Write the time of each layer to FILE as JSON");
  add_build_options(be, bench.build, false);

  InspectCmd inspect;
  auto* in = app.add_subcommand(
      "inspect",
      "Describe an engine (I/O, profiles, layers, memory); for an ONNX model, first which nodes kiln supports");
  in->add_option("model", inspect.model, "Engine file, or ONNX model (capability report, then built in memory)")
      ->required();
  in->add_flag("--json", inspect.json, "Print JSON: the engine's description (with the report for ONNX models)");
  in->add_flag("--report-only", inspect.report_only, "ONNX models: print the capability report and build nothing");
  add_build_options(in, inspect.build, true);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "kiln: error: " << e.what() << "\nRun 'kiln --help' (or 'kiln <command> --help') for usage."
              << std::endl;
    return 2;
  }
  if (b->parsed()) return report(run_build(build));
  if (r->parsed()) return report(run_run(run));
  if (be->parsed()) return report(run_bench(bench));
  if (in->parsed()) return report(run_inspect(inspect));
  return 2;
}

}  // namespace
}  // namespace kiln::cli

int main(int argc, char** argv) {
  // Errors are values inside kiln; this is only the last resort (e.g. an allocation failure).
  try {
    return kiln::cli::main_impl(argc, argv);
  } catch (const std::bad_alloc&) {
    std::cerr << "kiln: error: out of memory" << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "kiln: error: " << e.what() << std::endl;
  } catch (...) {
    std::cerr << "kiln: error: unknown failure" << std::endl;
  }
  return 1;
}

// Run inputs: --input files, the shapes and profile to run with, random data.
#include <random>

#include "app.h"
#include "cli_util.h"
#include "npy.h"

namespace kiln::cli {

Result<std::map<std::string, Tensor>> load_input_files(const std::vector<std::string>& specs) {
  std::map<std::string, Tensor> out;
  for (const auto& s : specs) {
    // Split on the first '=': tensor names rarely contain one, file paths may.
    size_t eq = s.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == s.size())
      return Status(ErrorCode::kInvalidArgument, "--input '" + s + "' should be name=file.npy");
    std::string name = s.substr(0, eq);
    if (out.count(name)) return Status(ErrorCode::kInvalidArgument, "--input: '" + name + "' is given twice");
    KILN_ASSIGN_OR_RETURN(Tensor t, npy_read(s.substr(eq + 1)));
    out[name] = t;
  }
  return out;
}

ShapeMap shapes_of(const std::map<std::string, Tensor>& tensors) {
  ShapeMap m;
  for (const auto& [name, t] : tensors) m[name] = t.dims();
  return m;
}

namespace {

bool in_range(const std::vector<Dims>& mmm, const Dims& d) {
  if (mmm.size() != 3 || mmm[0].size() != d.size()) return false;
  for (size_t i = 0; i < d.size(); ++i)
    if (d[i] < mmm[0][i] || d[i] > mmm[2][i]) return false;
  return true;
}

}  // namespace

Result<RunSetup> choose_run_setup(const Engine& e, const ShapeMap& given, int profile) {
  std::vector<std::string> inputs = engine_inputs(e);
  for (const auto& [name, dims] : given)
    if (e.get_tensor_mode(name) != TensorIOMode::kInput)
      return Status(ErrorCode::kNotFound,
                    "'" + name + "' is not an input of the engine (inputs: " + join(inputs, ", ") + ")");
  int np = e.num_optimization_profiles();
  if (profile >= np)
    return Status(ErrorCode::kInvalidArgument, "--profile " + std::to_string(profile) +
                                                   " is out of range (the engine has " + std::to_string(np) +
                                                   " profile" + (np == 1 ? "" : "s") + ")");
  RunSetup s;
  if (profile >= 0) {
    s.profile = profile;
  } else {
    s.profile = 0;
    for (int p = 0; p < np; ++p) {
      bool fits = true;
      for (const auto& [name, dims] : given) {
        auto mmm = e.get_tensor_profile_shape(name, p);
        if (!mmm.empty() && !in_range(mmm, dims)) fits = false;
      }
      if (fits) {
        s.profile = p;
        break;
      }
    }
  }
  for (const auto& name : inputs) {
    auto it = given.find(name);
    if (it != given.end()) {
      s.shapes[name] = it->second;
      continue;
    }
    Dims d = e.get_tensor_shape(name);
    auto mmm = e.get_tensor_profile_shape(name, s.profile);
    if (mmm.size() == 3 && mmm[1].size() == d.size()) d = mmm[1];
    for (int64_t x : d)
      if (x < 0)
        return Status(ErrorCode::kInvalidArgument, "input '" + name + "' has dynamic dims " + format_dims(d) +
                                                       " and the engine has no profile for it; give --shapes " + name +
                                                       ":...");
    s.shapes[name] = d;
  }
  return s;
}

Result<std::map<std::string, Tensor>> make_inputs(const Engine& e, const RunSetup& setup,
                                                  std::map<std::string, Tensor> given, uint64_t seed) {
  std::vector<std::string> inputs = engine_inputs(e);
  for (const auto& [name, t] : given) {
    if (e.get_tensor_mode(name) != TensorIOMode::kInput)
      return Status(ErrorCode::kNotFound,
                    "--input '" + name + "' is not an input of the engine (inputs: " + join(inputs, ", ") + ")");
    DataType want = e.get_tensor_dtype(name);
    if (t.dtype() != want)
      return Status(ErrorCode::kInvalidArgument, "--input '" + name + "' holds " + dtype_name(t.dtype()) +
                                                     " but the engine expects " + dtype_name(want));
  }
  if (!given.empty()) {
    std::vector<std::string> missing;
    for (const auto& name : inputs)
      if (!given.count(name)) missing.push_back(name);
    if (!missing.empty())
      return Status(ErrorCode::kNotFound, "no --input for " + join(missing, ", ") + "; give every input (" +
                                              join(inputs, ", ") + ") or none for random data");
    return given;
  }
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> real(-1.0, 1.0);
  std::uniform_int_distribution<int> small(0, 3);
  for (const auto& name : inputs) {
    DataType dt = e.get_tensor_dtype(name);
    if (!dtype_is_supported(dt))
      return Status(ErrorCode::kUnsupported,
                    "cannot make random data for input '" + name + "' of type " + dtype_name(dt));
    const Dims& d = setup.shapes.at(name);
    Tensor t = Tensor::empty(dt, d);
    for (int64_t i = 0; i < t.numel(); ++i)
      t.set_from_double(i, dtype_is_float(dt) ? real(rng) : (dt == DataType::kBool ? small(rng) & 1 : small(rng)));
    given[name] = t;
  }
  return given;
}

}  // namespace kiln::cli

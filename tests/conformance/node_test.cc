// One node test: parse model.onnx, build an engine (profile from the data when the
// model has dynamic dims), serialize/deserialize it, run every data set, compare.
#include "node_test.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "kiln/kiln.h"
#include "onnx/onnx.pb.h"
#include "tensor_proto.h"

namespace fs = std::filesystem;

namespace kiln::conformance {

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::kPass:
      return "pass";
    case Outcome::kFail:
      return "fail";
    case Outcome::kError:
      return "error";
    case Outcome::kUnsupported:
      return "unsupported";
    case Outcome::kCrash:
      return "crash";
    case Outcome::kTimeout:
      return "timeout";
  }
  return "error";
}

bool outcome_from_name(const std::string& s, Outcome* o) {
  for (Outcome x :
       {Outcome::kPass, Outcome::kFail, Outcome::kError, Outcome::kUnsupported, Outcome::kCrash, Outcome::kTimeout})
    if (s == outcome_name(x)) {
      *o = x;
      return true;
    }
  return false;
}

namespace {

bool is_integral_like(DataType t) { return !dtype_is_float(t); }

std::string fmt(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string index_text(int64_t flat, const Dims& dims) {
  Dims idx(dims.size());
  for (size_t i = dims.size(); i-- > 0;) {
    if (dims[i] > 0) {
      idx[i] = flat % dims[i];
      flat /= dims[i];
    }
  }
  std::string s = "[";
  for (size_t i = 0; i < idx.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(idx[i]);
  }
  s += ']';
  return s;
}

bool contains_ci(std::string hay, std::string needle) {
  std::transform(hay.begin(), hay.end(), hay.begin(), ::tolower);
  return hay.find(needle) != std::string::npos;
}

TestResult from_status(const Status& s, const std::string& stage) {
  Outcome o = (s.code() == ErrorCode::kUnsupported || contains_ci(s.message(), "unsupported") ||
               contains_ci(s.message(), "not supported"))
                  ? Outcome::kUnsupported
                  : Outcome::kError;
  return {o, stage + ": " + s.to_string()};
}

const char* value_kind(const onnx::TypeProto& t) {
  if (t.has_tensor_type()) return nullptr;
  if (t.has_sequence_type()) return "sequence";
  if (t.has_optional_type()) return "optional";
  if (t.has_map_type()) return "map";
  if (t.has_sparse_tensor_type()) return "sparse tensor";
  return "untyped";
}

class StderrLogger : public Logger {
 public:
  explicit StderrLogger(bool verbose) : Logger(verbose ? Severity::kInfo : Severity::kError) {}
};

}  // namespace

std::string compare_tensors(const Tensor& a, const Tensor& e, const Tolerance& tol) {
  if (a.dtype() != e.dtype())
    return std::string("dtype ") + dtype_name(a.dtype()) + ", expected " + dtype_name(e.dtype());
  if (a.dims() != e.dims()) return "shape " + dims_to_string(a.dims()) + ", expected " + dims_to_string(e.dims());
  int64_t n = e.numel();
  if (n > 0 && (a.data() == nullptr || e.data() == nullptr)) return "output has no data";
  int64_t bad = 0, first = -1;
  double worst = 0;
  int64_t worst_i = -1;
  if (is_integral_like(e.dtype())) {
    size_t es = dtype_size(e.dtype());
    for (int64_t i = 0; i < n; ++i)
      if (std::memcmp(static_cast<const char*>(a.data()) + i * es, static_cast<const char*>(e.data()) + i * es, es)) {
        if (first < 0) first = i;
        ++bad;
      }
    if (!bad) return "";
    return std::to_string(bad) + " of " + std::to_string(n) + " values differ; first at " +
           index_text(first, e.dims()) + ": got " + std::to_string(a.get_as_int64(first)) + ", expected " +
           std::to_string(e.get_as_int64(first));
  }
  for (int64_t i = 0; i < n; ++i) {
    double x = a.get_as_double(i), y = e.get_as_double(i);
    bool ok;
    if (std::isnan(y) || std::isnan(x))
      ok = std::isnan(x) && std::isnan(y);
    else if (std::isinf(y) || std::isinf(x))
      ok = x == y;
    else
      ok = std::fabs(x - y) <= tol.atol + tol.rtol * std::fabs(y);
    if (!ok) {
      if (first < 0) first = i;
      ++bad;
      double err = std::isfinite(x) && std::isfinite(y) ? std::fabs(x - y) : INFINITY;
      if (worst_i < 0 || err > worst) {
        worst = err;
        worst_i = i;
      }
    }
  }
  if (!bad) return "";
  return std::to_string(bad) + " of " + std::to_string(n) + " values differ (rtol " + fmt(tol.rtol) + ", atol " +
         fmt(tol.atol) + "); worst at " + index_text(worst_i, e.dims()) + ": got " + fmt(a.get_as_double(worst_i)) +
         ", expected " + fmt(e.get_as_double(worst_i));
}

TestResult run_node_test(const std::string& dir, const NodeTestOptions& opt) {
  std::string model_path = (fs::path(dir) / "model.onnx").string();
  onnx::ModelProto model;
  {
    std::ifstream in(model_path, std::ios::binary);
    if (!in) return {Outcome::kError, "cannot open " + model_path};
    std::stringstream ss;
    ss << in.rdbuf();
    if (!model.ParseFromString(ss.str())) return {Outcome::kError, "model.onnx is not a ModelProto"};
  }
  const auto& g = model.graph();
  for (const auto& v : g.input())
    if (const char* k = value_kind(v.type()))
      return {Outcome::kUnsupported, std::string(k) + " input '" + v.name() + "'"};
  for (const auto& v : g.output())
    if (const char* k = value_kind(v.type()))
      return {Outcome::kUnsupported, std::string(k) + " output '" + v.name() + "'"};

  // Test data sets, in order.
  struct DataSet {
    std::map<std::string, Tensor> inputs;
    std::vector<Tensor> outputs;
  };
  std::vector<std::string> set_dirs;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_directory() && entry.path().filename().string().rfind("test_data_set_", 0) == 0)
      set_dirs.push_back(entry.path().string());
  std::sort(set_dirs.begin(), set_dirs.end());
  if (set_dirs.empty()) return {Outcome::kError, "no test_data_set_* folder"};
  std::vector<DataSet> sets;
  for (const auto& sd : set_dirs) {
    DataSet ds;
    for (int i = 0; i < g.input_size(); ++i) {
      fs::path p = fs::path(sd) / ("input_" + std::to_string(i) + ".pb");
      if (!fs::exists(p)) continue;
      auto t = read_tensor_file(p.string());
      if (!t.ok()) return from_status(t.status(), "reading test data");
      ds.inputs[g.input(i).name()] = t.value();
    }
    for (int i = 0; i < g.output_size(); ++i) {
      fs::path p = fs::path(sd) / ("output_" + std::to_string(i) + ".pb");
      if (!fs::exists(p)) return {Outcome::kError, "missing " + p.string()};
      auto t = read_tensor_file(p.string());
      if (!t.ok()) return from_status(t.status(), "reading test data");
      ds.outputs.push_back(t.value());
    }
    sets.push_back(std::move(ds));
  }

  StderrLogger logger(opt.verbose);
  Builder builder(logger);
  auto net = builder.create_network();
  OnnxParser parser(*net, logger);
  if (!parser.parse_from_file(model_path)) {
    std::string msg = parser.num_errors() ? parser.error(0).to_string() : "parse failed without a message";
    Status s(ErrorCode::kInvalidModel, msg);
    return from_status(s, "parse");
  }

  // A profile spanning the data sets' shapes for every input with a dynamic dim.
  auto config = builder.create_builder_config();
  if (opt.opt_level >= 0) config->set_optimization_level(opt.opt_level);
  if (opt.cuda) {
    config->set_device(DeviceType::kCUDA);
    config->clear_flag(BuilderFlag::kTF32);
  }
  OptimizationProfile profile;
  bool need_profile = false;
  for (int i = 0; i < net->num_inputs(); ++i) {
    NetworkTensor* t = net->get_input(i);
    Dims decl = t->shape();
    bool dynamic = std::any_of(decl.begin(), decl.end(), [](int64_t d) { return d < 0; });
    Dims mn, mx, first;
    bool have = false;
    for (const auto& ds : sets) {
      auto it = ds.inputs.find(t->name());
      if (it == ds.inputs.end()) continue;
      const Dims& d = it->second.dims();
      if (!have) {
        mn = mx = first = d;
        have = true;
      } else if (d.size() == mn.size()) {
        for (size_t k = 0; k < d.size(); ++k) {
          mn[k] = std::min(mn[k], d[k]);
          mx[k] = std::max(mx[k], d[k]);
        }
      }
    }
    if (!have) continue;
    if (!dynamic && decl.size() == first.size()) continue;
    need_profile = true;
    Status s = profile.set_shape(t->name(), mn, first, mx);
    if (!s.ok()) return from_status(s, "profile");
  }
  if (need_profile) config->add_optimization_profile(profile);

  auto plan = builder.build_serialized_network(*net, *config);
  if (!plan.ok()) return from_status(plan.status(), "build");
  Runtime runtime(logger);
  auto engine = runtime.deserialize(plan.value().data(), plan.value().size());
  if (!engine.ok()) return from_status(engine.status(), "deserialize");
  auto ctx = engine.value()->create_execution_context();

  for (size_t si = 0; si < sets.size(); ++si) {
    std::map<std::string, Tensor> feed;
    for (const auto& [name, t] : sets[si].inputs)
      if (engine.value()->get_tensor_mode(name) == TensorIOMode::kInput) feed[name] = t;
    auto out = ctx->infer(feed);
    std::string where = sets.size() > 1 ? "data set " + std::to_string(si) + ": " : "";
    if (!out.ok()) return from_status(out.status(), where + "infer");
    for (int i = 0; i < g.output_size(); ++i) {
      const std::string& name = g.output(i).name();
      auto it = out.value().find(name);
      if (it == out.value().end()) return {Outcome::kFail, where + "no output '" + name + "'"};
      std::string diff = compare_tensors(it->second, sets[si].outputs[static_cast<size_t>(i)], opt.tol);
      if (!diff.empty()) return {Outcome::kFail, where + "output '" + name + "': " + diff};
    }
  }
  return {Outcome::kPass, ""};
}

}  // namespace kiln::conformance

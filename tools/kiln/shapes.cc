// Shape specs ("name:1x3x224x224,...") and the optimization profiles built from them.
#include <algorithm>
#include <cctype>
#include <limits>

#include "app.h"
#include "cli_util.h"
#include "profiles.h"

namespace kiln::cli {

Result<Dims> parse_dims(const std::string& text, const std::string& what) {
  Dims dims;
  if (text.empty()) return dims;
  size_t start = 0;
  while (true) {
    size_t x = text.find_first_of("xX*", start);
    std::string part = text.substr(start, x == std::string::npos ? std::string::npos : x - start);
    if (part.empty() || part.size() > 15 ||
        !std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
      return Status(ErrorCode::kInvalidArgument,
                    what + ": '" + text + "' is not a shape like 1x3x224x224 (non-negative integers separated by 'x')");
    dims.push_back(std::stoll(part));
    if (x == std::string::npos) break;
    start = x + 1;
  }
  return dims;
}

Result<ShapeMap> parse_shape_spec(const std::string& spec, const std::string& flag) {
  ShapeMap out;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    std::string entry = spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    // Tolerate surrounding blanks and a trailing comma.
    while (!entry.empty() && std::isspace(static_cast<unsigned char>(entry.back()))) entry.pop_back();
    while (!entry.empty() && std::isspace(static_cast<unsigned char>(entry.front()))) entry.erase(entry.begin());
    if (!entry.empty()) {
      // Tensor names may contain ':' (e.g. "input:0"); the dims never do.
      size_t colon = entry.rfind(':');
      if (colon == std::string::npos || colon == 0)
        return Status(ErrorCode::kInvalidArgument,
                      flag + ": '" + entry + "' should be name:dims, e.g. input:1x3x224x224");
      std::string name = entry.substr(0, colon);
      KILN_ASSIGN_OR_RETURN(Dims dims, parse_dims(entry.substr(colon + 1), flag + " '" + name + "'"));
      if (out.count(name)) return Status(ErrorCode::kInvalidArgument, flag + ": input '" + name + "' is given twice");
      out[name] = dims;
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (out.empty()) return Status(ErrorCode::kInvalidArgument, flag + ": empty shape list");
  return out;
}

namespace {

struct NetInput {
  std::string name;
  Dims dims;
};

bool is_dynamic(const Dims& d) {
  return std::any_of(d.begin(), d.end(), [](int64_t x) { return x < 0; });
}

// Checks `dims` against the network's declared dims: same rank, static dims equal.
Status check_against_network(const NetInput& in, const Dims& dims, const std::string& what) {
  if (dims.size() != in.dims.size())
    return Status(ErrorCode::kInvalidArgument, what + ": input '" + in.name + "' has rank " +
                                                   std::to_string(in.dims.size()) + " " + format_dims(in.dims) +
                                                   ", the shape given is " + format_dims(dims));
  for (size_t i = 0; i < dims.size(); ++i)
    if (in.dims[i] >= 0 && in.dims[i] != dims[i])
      return Status(ErrorCode::kInvalidArgument, what + ": input '" + in.name + "' dim " + std::to_string(i) +
                                                     " is fixed to " + std::to_string(in.dims[i]) +
                                                     " by the model, the shape given has " + std::to_string(dims[i]));
  return Status();
}

}  // namespace

Result<std::vector<OptimizationProfile>> make_profiles(const NetworkDefinition& net, const BuildOptions& o,
                                                       const ShapeMap& run_shapes, Logger& logger) {
  std::vector<NetInput> inputs;
  for (int i = 0; i < net.num_inputs(); ++i) {
    NetworkTensor* t = net.get_input(i);
    if (t) inputs.push_back({t->name(), t->shape()});
  }
  auto find_input = [&](const std::string& name) -> const NetInput* {
    for (const auto& in : inputs)
      if (in.name == name) return &in;
    return nullptr;
  };
  auto input_names = [&]() {
    std::vector<std::string> names;
    for (const auto& in : inputs) names.push_back(in.name);
    return join(names, ", ");
  };

  // One entry per profile: min/opt/max maps, each possibly empty.
  struct Spec {
    ShapeMap min, opt, max;
  };
  std::vector<Spec> specs;
  bool ranges = !o.min_shapes.empty() || !o.opt_shapes.empty() || !o.max_shapes.empty();
  if (ranges) {
    if (!o.shapes.empty())
      return Status(ErrorCode::kInvalidArgument,
                    "give either --shapes or --min-shapes/--opt-shapes/--max-shapes, not both");
    size_t n = std::max({o.min_shapes.size(), o.opt_shapes.size(), o.max_shapes.size()});
    const std::pair<const std::vector<std::string>*, const char*> lists[] = {
        {&o.min_shapes, "--min-shapes"}, {&o.opt_shapes, "--opt-shapes"}, {&o.max_shapes, "--max-shapes"}};
    for (auto& [list, flag] : lists)
      if (!list->empty() && list->size() != n)
        return Status(ErrorCode::kInvalidArgument, std::string(flag) + " is given " + std::to_string(list->size()) +
                                                       (list->size() == 1 ? " time" : " times") + " but there are " +
                                                       std::to_string(n) +
                                                       " profiles; give it once per profile (or not at all)");
    specs.resize(n);
    for (size_t p = 0; p < n; ++p) {
      if (!o.min_shapes.empty()) {
        KILN_ASSIGN_OR_RETURN(specs[p].min, parse_shape_spec(o.min_shapes[p], "--min-shapes"));
      }
      if (!o.opt_shapes.empty()) {
        KILN_ASSIGN_OR_RETURN(specs[p].opt, parse_shape_spec(o.opt_shapes[p], "--opt-shapes"));
      }
      if (!o.max_shapes.empty()) {
        KILN_ASSIGN_OR_RETURN(specs[p].max, parse_shape_spec(o.max_shapes[p], "--max-shapes"));
      }
    }
  } else if (!o.shapes.empty()) {
    for (const auto& s : o.shapes) {
      KILN_ASSIGN_OR_RETURN(ShapeMap m, parse_shape_spec(s, "--shapes"));
      specs.push_back({m, m, m});
    }
  } else {
    specs.push_back({run_shapes, run_shapes, run_shapes});
  }

  bool any_dynamic = std::any_of(inputs.begin(), inputs.end(), [](const NetInput& in) { return is_dynamic(in.dims); });
  std::vector<OptimizationProfile> profiles;
  for (size_t p = 0; p < specs.size(); ++p) {
    const Spec& s = specs[p];
    std::string where = specs.size() > 1 ? "profile " + std::to_string(p) : "shapes";
    std::vector<std::string> names;
    for (const ShapeMap* m : {&s.min, &s.opt, &s.max})
      for (const auto& [name, dims] : *m)
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    OptimizationProfile prof;
    for (const auto& name : names) {
      const NetInput* in = find_input(name);
      if (!in)
        return Status(ErrorCode::kNotFound,
                      where + ": '" + name + "' is not an input of the model (inputs: " + input_names() + ")");
      auto pick = [](const ShapeMap& m, const std::string& n) -> const Dims* {
        auto it = m.find(n);
        return it == m.end() ? nullptr : &it->second;
      };
      const Dims* mn = pick(s.min, name);
      const Dims* op = pick(s.opt, name);
      const Dims* mx = pick(s.max, name);
      // trtexec's defaulting: a missing bound follows opt (or whichever bound exists).
      const Dims* opt = op ? op : (mx ? mx : mn);
      Dims dmin = mn ? *mn : *opt, dopt = *opt, dmax = mx ? *mx : *opt;
      for (const Dims* d : {&dmin, &dopt, &dmax}) KILN_RETURN_IF_ERROR(check_against_network(*in, *d, where));
      for (size_t i = 0; i < dopt.size(); ++i)
        if (dmin[i] > dopt[i] || dopt[i] > dmax[i])
          return Status(ErrorCode::kInvalidArgument,
                        where + ": input '" + name + "' needs min <= opt <= max in every dim, got min " +
                            format_dims(dmin) + ", opt " + format_dims(dopt) + ", max " + format_dims(dmax));
      if (!is_dynamic(in->dims)) continue;  // nothing to choose for a static input
      KILN_RETURN_IF_ERROR(prof.set_shape(name, dmin, dopt, dmax).with_context(where));
    }
    for (const auto& in : inputs) {
      if (!is_dynamic(in.dims) || prof.has_shape(in.name)) continue;
      // As trtexec does: a dynamic input without a shape runs with its dynamic dims set to 1.
      Dims d = in.dims;
      for (auto& x : d)
        if (x < 0) x = 1;
      logger.emit(Logger::Severity::kWarning, "input '" + in.name + "' has dynamic dims " + format_dims(in.dims) +
                                                  " and no shape was given; using " + format_dims(d) +
                                                  " (set --shapes or --min-shapes/--opt-shapes/--max-shapes)");
      KILN_RETURN_IF_ERROR(prof.set_shape(in.name, d, d, d).with_context(where));
    }
    if (any_dynamic) profiles.push_back(prof);
  }
  return profiles;
}

}  // namespace kiln::cli

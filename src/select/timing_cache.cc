#include "select/timing_cache.h"

#include <unistd.h>
#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "backends/cuda/tactic_sink.h"
#include "passes/fusion_util.h"

namespace kiln::select {

namespace {

uint64_t fnv1a(const void* data, size_t n, uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

// Printable ASCII without tabs: anything else (and '\') as \xHH.
std::string escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

// Inverse of escape(); false on a malformed escape.
bool unescape(const std::string& s, std::string& out) {
  out.clear();
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (i + 3 >= s.size() || s[i + 1] != 'x' || !std::isxdigit(static_cast<unsigned char>(s[i + 2])) ||
        !std::isxdigit(static_cast<unsigned char>(s[i + 3])))
      return false;
    out += static_cast<char>(std::stoi(s.substr(i + 2, 2), nullptr, 16));
    i += 3;
  }
  return true;
}

std::string quoted(const std::string& s) {
  std::string q(1, '"');
  q += escape(s);
  q += '"';
  return q;
}

std::string num(float f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", f);
  return buf;
}

template <typename T, typename F>
std::string list(const std::vector<T>& v, F each) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += each(v[i]);
  }
  return s + "]";
}

std::string attr_text(const ir::Attribute& a) {
  using K = ir::Attribute::Kind;
  switch (a.kind) {
    case K::kInt:
      return "i" + std::to_string(a.i);
    case K::kFloat:
      return "f" + num(a.f);
    case K::kString:
      return "s" + quoted(a.s);
    case K::kInts:
      return "i" + list(a.ints, [](int64_t x) { return std::to_string(x); });
    case K::kFloats:
      return "f" + list(a.floats, [](float x) { return num(x); });
    case K::kStrings:
      return "s" + list(a.strings, quoted);
    case K::kTensor:
      return std::string("t") + dtype_name(a.t.dtype()) + dims_to_string(a.t.dims()) + ":" +
             hex64(fnv1a(a.t.data(), a.t.nbytes()));
    case K::kTensors:
      return "t*" + std::to_string(a.tensors.size());
    case K::kGraph:
      return "g";
    case K::kGraphs:
      return "g*" + std::to_string(a.graphs.size());
  }
  return "?";
}

Status bad(const std::string& file, const std::string& what) {
  return Status(ErrorCode::kInvalidModel, "timing cache '" + file + "' is " + what);
}

// Whole-string integer / float parses (no trailing junk).
bool parse_i64(const std::string& s, int64_t& v) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(s.c_str(), &end, 10);
  if (errno || *end) return false;
  v = x;
  return true;
}
bool parse_f32(const std::string& s, float& v) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  v = std::strtof(s.c_str(), &end);
  return !errno && !*end;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t b = 0;
  for (size_t e; (e = s.find(sep, b)) != std::string::npos; b = e + 1) parts.push_back(s.substr(b, e - b));
  parts.push_back(s.substr(b));
  return parts;
}

}  // namespace

const TimingEntry* TimingCache::find(const std::string& signature) const {
  auto it = entries_.find(signature);
  return it == entries_.end() ? nullptr : &it->second;
}

void TimingCache::put(const std::string& signature, const TimingEntry& e) { entries_[signature] = e; }

std::string TimingCache::serialize() const {
  std::string s = std::string(kTimingCacheMagic) + " " + std::to_string(kTimingCacheVersion) + "\n";
  s += "key " + escape(key_) + "\n";
  s += "entries " + std::to_string(entries_.size()) + "\n";
  for (auto& [sig, e] : entries_)
    s += std::to_string(e.tactic) + "\t" + num(e.ms) + "\t" + std::to_string(e.timed) + "\t" + std::to_string(e.total) +
         "\t" + sig + (e.state.empty() ? "" : "\t" + escape(e.state)) + "\n";
  s += "end " + hex64(fnv1a(s.data(), s.size())) + "\n";
  return s;
}

Result<TimingCache> TimingCache::parse(const std::string& text, const std::string& file) {
  if (text.empty()) return bad(file, "empty (truncated?)");
  const std::string magic = std::string(kTimingCacheMagic) + " ";
  if (text.compare(0, magic.size(), magic) != 0) return bad(file, "not a kiln timing cache (bad magic)");
  // Lines, each ending in '\n'; `offset[i]` is where line i starts.
  std::vector<std::string> lines;
  std::vector<size_t> offset;
  size_t b = 0;
  for (size_t e; (e = text.find('\n', b)) != std::string::npos; b = e + 1) {
    offset.push_back(b);
    lines.push_back(text.substr(b, e - b));
  }
  const bool partial_line = b != text.size();
  int64_t version = 0;
  if (lines.empty() || !parse_i64(lines[0].substr(magic.size()), version))
    return bad(file, "truncated or corrupt: line 1 should be '" + magic + "<version>'");
  if (version < kTimingCacheOldestRead || version > kTimingCacheVersion)
    return Status(ErrorCode::kVersionMismatch, "timing cache '" + file + "' has format version " +
                                                   std::to_string(version) + "; this kiln writes version " +
                                                   std::to_string(kTimingCacheVersion));
  if (lines.size() < 2 || lines[1].compare(0, 4, "key ") != 0)
    return bad(file, "truncated or corrupt: line 2 should be 'key <device and library versions>'");
  int64_t count = -1;
  if (lines.size() < 3 || lines[2].compare(0, 8, "entries ") != 0 || !parse_i64(lines[2].substr(8), count) || count < 0)
    return bad(file, "truncated or corrupt: line 3 should be 'entries <count>'");
  std::string key;
  if (!unescape(lines[1].substr(4), key)) return bad(file, "corrupt: line 2 has a malformed escape");
  TimingCache cache(key);
  size_t i = 3;
  for (int64_t n = 0; n < count; ++n, ++i) {
    if (i >= lines.size())
      return bad(file, "truncated: it ends after " + std::to_string(n) + " of " + std::to_string(count) + " entries");
    std::vector<std::string> f = split(lines[i], '\t');
    TimingEntry e;
    int64_t timed = 0, total = 0;
    const bool fields_ok = f.size() == 5 || (f.size() == 6 && version >= 4 && !f[5].empty());
    if (!fields_ok || !parse_i64(f[0], e.tactic) || !parse_f32(f[1], e.ms) || !parse_i64(f[2], timed) ||
        !parse_i64(f[3], total) || f[4].empty() || (f.size() == 6 && !unescape(f[5], e.state)))
      return bad(file, "corrupt: line " + std::to_string(i + 1) +
                           " should be '<tactic>\\t<ms>\\t<timed>\\t<total>\\t<signature>[\\t<state>]'");
    e.timed = static_cast<int>(timed);
    e.total = static_cast<int>(total);
    cache.entries_[f[4]] = e;
  }
  if (i >= lines.size()) return bad(file, "truncated: the closing 'end <checksum>' line is missing");
  if (lines[i].compare(0, 4, "end ") != 0)
    return bad(file, "corrupt: line " + std::to_string(i + 1) + " should be 'end <checksum>' after " +
                         std::to_string(count) + " entries");
  if (i + 1 != lines.size() || partial_line) return bad(file, "corrupt: data follows the 'end' line");
  if (lines[i].substr(4) != hex64(fnv1a(text.data(), offset[i])))
    return bad(file, "corrupt: checksum mismatch (the file was modified or damaged)");
  return cache;
}

Result<TimingCache> TimingCache::load(const std::string& path, const std::string& key, Logger& logger) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    logger.emit(Logger::Severity::kInfo, "timing cache '" + path + "' does not exist yet; it will be created");
    return TimingCache(key);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(ErrorCode::kIo, "cannot read timing cache '" + path + "': " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status(ErrorCode::kIo, "error reading timing cache '" + path + "'");
  auto cache = parse(ss.str(), path);
  if (!cache.ok() && cache.status().code() == ErrorCode::kVersionMismatch) {
    logger.emit(Logger::Severity::kWarning, cache.status().message() + "; ignoring it (it will be rewritten)");
    return TimingCache(key);
  }
  if (!cache.ok()) return cache.status();
  if (cache->key() != key) {
    logger.emit(Logger::Severity::kWarning, "timing cache '" + path + "' was measured on '" + cache->key() +
                                                "', this build runs on '" + key +
                                                "'; ignoring it (it will be rewritten)");
    return TimingCache(key);
  }
  return cache;
}

Status TimingCache::save(const std::string& path) const {
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  const std::string text = serialize();
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return Status(ErrorCode::kIo, "cannot write timing cache '" + tmp + "': " + std::strerror(errno));
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) {
      std::filesystem::remove(tmp);
      return Status(ErrorCode::kIo, "error writing timing cache '" + tmp + "'");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    return Status(ErrorCode::kIo, "cannot replace timing cache '" + path + "': " + ec.message());
  }
  return Status();
}

std::string node_signature(const ir::Node& node, const std::vector<ops::TensorType>& inputs, const std::string& build) {
  std::string s = escape(node.domain) + "::" + escape(node.op_type) + " kernel=" + escape(node.kernel) +
                  " precision=" + dtype_name(node.precision) + " " + escape(build) + " inputs=";
  for (size_t i = 0; i < inputs.size(); ++i) {
    s += i ? "," : "";
    const ops::TensorType& t = inputs[i];
    if (i >= node.inputs.size() || !node.inputs[i] || t.dtype == DataType::kUndefined) {
      s += "-";
      continue;
    }
    s += std::string(dtype_name(t.dtype)) + (t.shape ? escape(shape_to_string(*t.shape)) : "[?]");
  }
  s += " attrs=";
  for (auto& [name, a] : node.attrs.all()) {
    // Outcomes and provenance, not the problem: BERT's twelve layers' GEMMs are one problem
    // each, timed once (session 20: with the fused-from names in, all 60 nodes were timed).
    if (name == ops::kTacticAttr || name == cuda::kKernelStateAttr || name == passes::kFusedFromAttr) continue;
    s += escape(name) + ":" + attr_text(a) + ";";
  }
  return s;
}

}  // namespace kiln::select

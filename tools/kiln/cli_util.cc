#include "cli_util.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kiln::cli {

Result<std::vector<uint8_t>> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(ErrorCode::kIo, "cannot open '" + path + "': " + std::strerror(errno));
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  if (size < 0) return Status(ErrorCode::kIo, "cannot read '" + path + "' (not a regular file?)");
  in.seekg(0, std::ios::beg);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    return Status(ErrorCode::kIo, "cannot read '" + path + "'");
  return bytes;
}

Status write_file(const std::string& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status(ErrorCode::kIo, "cannot create '" + path + "': " + std::strerror(errno));
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) return Status(ErrorCode::kIo, "cannot write '" + path + "'");
  return Status();
}

std::string safe_file_name(const std::string& name) {
  std::string s;
  for (char c : name) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    s += ok ? c : '_';
  }
  // "." and ".." would name directories.
  if (s.empty() || s == "." || s == "..") s = std::string(s.size() + 1, '_');
  return s;
}

std::string format_bytes(uint64_t bytes) {
  char buf[64];
  if (bytes < 1024) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else if (bytes < 1024ull * 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  } else if (bytes < 1024ull * 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / (1024.0 * 1024));
  } else {
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
  }
  return buf;
}

std::string format_dims(const Dims& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(d[i]);
  }
  return s + "]";
}

std::string format_values(const Tensor& t, int64_t count) {
  if (t.is_null() || t.data() == nullptr) return "";
  if (dtype_size(t.dtype()) == 0) return "(not printable)";
  std::ostringstream os;
  int64_t n = t.numel();
  for (int64_t i = 0; i < n && i < count; ++i) {
    if (i) os << ", ";
    if (t.dtype() == DataType::kBool) {
      os << (t.get_as_double(i) != 0 ? "true" : "false");
    } else if (dtype_is_float(t.dtype())) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.6g", t.get_as_double(i));
      os << buf;
    } else if (t.dtype() == DataType::kUInt64) {
      os << static_cast<const uint64_t*>(t.data())[i];
    } else {
      os << t.get_as_int64(i);
    }
  }
  if (n > count) os << ", ...";
  return os.str();
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) s += sep;
    s += parts[i];
  }
  return s;
}

}  // namespace kiln::cli

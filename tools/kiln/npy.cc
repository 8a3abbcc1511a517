// .npy reader/writer. The header is a Python dict literal; we parse only the
// subset NumPy writes ({'descr': str, 'fortran_order': bool, 'shape': tuple}).
#include "npy.h"

#include <cctype>
#include <cstring>
#include <limits>

#include "cli_util.h"

namespace kiln::cli {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

struct DescrEntry {
  const char* descr;
  DataType dtype;
};
constexpr DescrEntry kDescrs[] = {
    {"<f4", DataType::kFloat32}, {"<f8", DataType::kFloat64}, {"<f2", DataType::kFloat16}, {"|i1", DataType::kInt8},
    {"<i1", DataType::kInt8},    {"|u1", DataType::kUInt8},   {"<u1", DataType::kUInt8},   {"<i2", DataType::kInt16},
    {"<u2", DataType::kUInt16},  {"<i4", DataType::kInt32},   {"<u4", DataType::kUInt32},  {"<i8", DataType::kInt64},
    {"<u8", DataType::kUInt64},  {"|b1", DataType::kBool},    {"<b1", DataType::kBool},
};

Status bad(const std::string& what, const std::string& msg) {
  return Status(ErrorCode::kInvalidArgument, what + ": " + msg);
}

// A cursor over the header text.
class HeaderParser {
 public:
  explicit HeaderParser(const std::string& s) : s_(s) {}
  void skip_ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool eat(char c) {
    skip_ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool peek(char c) {
    skip_ws();
    return i_ < s_.size() && s_[i_] == c;
  }
  bool string(std::string* out) {
    skip_ws();
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) return false;
    char q = s_[i_++];
    size_t start = i_;
    while (i_ < s_.size() && s_[i_] != q) ++i_;
    if (i_ >= s_.size()) return false;
    *out = s_.substr(start, i_ - start);
    ++i_;
    return true;
  }
  bool word(std::string* out) {
    skip_ws();
    size_t start = i_;
    while (i_ < s_.size() && std::isalpha(static_cast<unsigned char>(s_[i_]))) ++i_;
    *out = s_.substr(start, i_ - start);
    return !out->empty();
  }
  bool integer(int64_t* out) {
    skip_ws();
    size_t start = i_;
    uint64_t v = 0;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) {
      v = v * 10 + static_cast<uint64_t>(s_[i_] - '0');
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 16)) return false;
      ++i_;
    }
    // Python 2 era headers may write longs as "3L".
    if (i_ < s_.size() && s_[i_] == 'L') ++i_;
    *out = static_cast<int64_t>(v);
    return i_ > start;
  }
  bool at_end() {
    skip_ws();
    return i_ >= s_.size();
  }

 private:
  const std::string& s_;
  size_t i_ = 0;
};

}  // namespace

std::string npy_descr(DataType t) {
  switch (t) {
    case DataType::kFloat32:
      return "<f4";
    case DataType::kFloat64:
      return "<f8";
    case DataType::kFloat16:
      return "<f2";
    case DataType::kInt8:
      return "|i1";
    case DataType::kUInt8:
      return "|u1";
    case DataType::kInt16:
      return "<i2";
    case DataType::kUInt16:
      return "<u2";
    case DataType::kInt32:
      return "<i4";
    case DataType::kUInt32:
      return "<u4";
    case DataType::kInt64:
      return "<i8";
    case DataType::kUInt64:
      return "<u8";
    case DataType::kBool:
      return "|b1";
    // Types numpy lacks: widened floats, and the one-per-byte 4-/2-bit integers as 8-bit ones.
    case DataType::kBFloat16:
    case DataType::kFloat8E4M3FN:
    case DataType::kFloat8E4M3FNUZ:
    case DataType::kFloat8E5M2:
    case DataType::kFloat8E5M2FNUZ:
    case DataType::kFloat8E8M0:
    case DataType::kFloat4E2M1:
      return "<f4";
    case DataType::kInt4:
    case DataType::kInt2:
      return "|i1";
    case DataType::kUInt4:
    case DataType::kUInt2:
      return "|u1";
    default:
      return "";
  }
}

Result<Tensor> npy_parse(const void* data, size_t size, const std::string& what) {
  const auto* p = static_cast<const uint8_t*>(data);
  if (size < kMagicLen + 2 || std::memcmp(p, kMagic, kMagicLen) != 0)
    return bad(what, "not a .npy file (missing \\x93NUMPY magic)");
  uint8_t major = p[6];
  size_t header_len = 0;
  size_t header_start = 0;
  if (major == 1) {
    if (size < 10) return bad(what, "truncated .npy header");
    header_len = static_cast<size_t>(p[8]) | (static_cast<size_t>(p[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) return bad(what, "truncated .npy header");
    header_len = static_cast<size_t>(p[8]) | (static_cast<size_t>(p[9]) << 8) | (static_cast<size_t>(p[10]) << 16) |
                 (static_cast<size_t>(p[11]) << 24);
    header_start = 12;
  } else {
    return bad(what, "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(p[7]) +
                         " (supported: 1.0, 2.0, 3.0)");
  }
  if (header_len > size - header_start)
    return bad(what, "truncated .npy file: header says " + std::to_string(header_len) +
                         " header bytes but the file has " + std::to_string(size - header_start));
  std::string header(reinterpret_cast<const char*>(p + header_start), header_len);

  HeaderParser hp(header);
  std::string descr;
  bool have_descr = false, have_order = false, have_shape = false, fortran = false;
  Dims dims;
  if (!hp.eat('{')) return bad(what, "malformed .npy header (expected a dict): " + header);
  while (!hp.eat('}')) {
    std::string key;
    if (!hp.string(&key) || !hp.eat(':')) return bad(what, "malformed .npy header: " + header);
    if (key == "descr") {
      if (!hp.string(&descr))
        return bad(what, "malformed 'descr' in .npy header (structured dtypes are not supported)");
      have_descr = true;
    } else if (key == "fortran_order") {
      std::string w;
      if (!hp.word(&w) || (w != "True" && w != "False")) return bad(what, "malformed 'fortran_order' in .npy header");
      fortran = w == "True";
      have_order = true;
    } else if (key == "shape") {
      if (!hp.eat('(')) return bad(what, "malformed 'shape' in .npy header");
      while (!hp.eat(')')) {
        int64_t d = 0;
        if (!hp.integer(&d)) return bad(what, "malformed 'shape' in .npy header (dims must be non-negative integers)");
        dims.push_back(d);
        if (dims.size() > 64) return bad(what, "shape has more than 64 dims");
        if (!hp.eat(',') && !hp.peek(')')) return bad(what, "malformed 'shape' in .npy header");
      }
      have_shape = true;
    } else {
      return bad(what, "unexpected key '" + key + "' in .npy header");
    }
    if (!hp.eat(',') && !hp.peek('}')) return bad(what, "malformed .npy header: " + header);
  }
  if (!have_descr || !have_order || !have_shape)
    return bad(what, "the .npy header lacks 'descr', 'fortran_order' or 'shape'");
  if (fortran) return bad(what, "Fortran-order arrays are not supported; save a C-order array (np.ascontiguousarray)");

  DataType dtype = DataType::kUndefined;
  for (const auto& e : kDescrs)
    if (descr == e.descr) dtype = e.dtype;
  if (dtype == DataType::kUndefined) {
    if (!descr.empty() && descr[0] == '>')
      return bad(what, "big-endian dtype '" + descr + "' is not supported; save with a little-endian dtype");
    return bad(what, "unsupported dtype '" + descr + "' (supported: <f4 <f8 <f2 |i1 |u1 <i2 <u2 <i4 <u4 <i8 <u8 |b1)");
  }

  uint64_t count = 1;
  for (int64_t d : dims) {
    if (d != 0 && count > std::numeric_limits<uint64_t>::max() / 16 / static_cast<uint64_t>(d))
      return bad(what, "shape " + format_dims(dims) + " is too large");
    count *= static_cast<uint64_t>(d);
  }
  uint64_t need = count * dtype_size(dtype);
  size_t data_start = header_start + header_len;
  size_t have = size - data_start;
  if (have < need)
    return bad(what, "truncated .npy data: " + std::string(dtype_name(dtype)) + " " + format_dims(dims) + " needs " +
                         std::to_string(need) + " bytes, the file has " + std::to_string(have));
  if (have > need) return bad(what, std::to_string(have - need) + " unexpected bytes after the array data");
  Tensor t = Tensor::empty(dtype, dims);
  if (need) std::memcpy(t.data(), p + data_start, need);
  if (dtype == DataType::kBool) {
    // Anything but 0/1 in a bool byte is undefined behaviour when read as bool.
    auto* b = static_cast<uint8_t*>(t.data());
    for (uint64_t i = 0; i < need; ++i) b[i] = b[i] ? 1 : 0;
  }
  return t;
}

Result<Tensor> npy_read(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(auto bytes, read_file(path));
  return npy_parse(bytes.data(), bytes.size(), "'" + path + "'");
}

Result<std::vector<uint8_t>> npy_serialize(const Tensor& in) {
  std::string descr = npy_descr(in.dtype());
  if (descr.empty())
    return Status(ErrorCode::kUnsupported, std::string("cannot write a ") + dtype_name(in.dtype()) + " tensor as .npy");
  Tensor t = in;
  if (in.dtype() == DataType::kBFloat16 || (dtype_is_narrow(in.dtype()) && dtype_is_float(in.dtype()))) {
    t = Tensor::empty(DataType::kFloat32, in.dims());
    for (int64_t i = 0; i < in.numel(); ++i) t.set_from_double(i, in.get_as_double(i));
  }
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < t.dims().size(); ++i) {
    header += std::to_string(t.dims()[i]);
    if (t.dims().size() == 1 || i + 1 < t.dims().size()) header += ",";
    if (i + 1 < t.dims().size()) header += " ";
  }
  header += "), }";
  // Pad with spaces so the data starts 64-byte aligned, ending with '\n' (as NumPy does).
  size_t prefix = 10;
  bool v2 = false;
  size_t total = prefix + header.size() + 1;
  size_t padded = (total + 63) / 64 * 64;
  if (padded - prefix > 65535) {
    v2 = true;
    prefix = 12;
    total = prefix + header.size() + 1;
    padded = (total + 63) / 64 * 64;
  }
  header.append(padded - total, ' ');
  header += '\n';
  std::vector<uint8_t> out;
  out.reserve(padded + t.nbytes());
  out.insert(out.end(), kMagic, kMagic + kMagicLen);
  out.push_back(v2 ? 2 : 1);
  out.push_back(0);
  size_t hl = header.size();
  out.push_back(static_cast<uint8_t>(hl & 0xff));
  out.push_back(static_cast<uint8_t>((hl >> 8) & 0xff));
  if (v2) {
    out.push_back(static_cast<uint8_t>((hl >> 16) & 0xff));
    out.push_back(static_cast<uint8_t>((hl >> 24) & 0xff));
  }
  out.insert(out.end(), header.begin(), header.end());
  const auto* d = static_cast<const uint8_t*>(t.data());
  if (t.nbytes()) out.insert(out.end(), d, d + t.nbytes());
  return out;
}

Status npy_write(const std::string& path, const Tensor& t) {
  KILN_ASSIGN_OR_RETURN(auto bytes, npy_serialize(t));
  return write_file(path, bytes.data(), bytes.size());
}

}  // namespace kiln::cli

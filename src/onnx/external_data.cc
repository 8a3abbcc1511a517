// External tensor data: a file beside the model named by location/offset/length.
// The location must stay inside the model's folder (no absolute paths, "..", or
// symlinks that lead out), and the byte range must match the tensor exactly.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include "base/subbyte.h"
#include "onnx/tensor_proto.h"

namespace kiln::onnx_import {

namespace fs = std::filesystem;

namespace {

// Parses a non-negative decimal integer; nothing else is accepted.
bool parse_size(const std::string& s, int64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, c - '0', &v)) return false;
  }
  out = v;
  return true;
}

bool is_inside(const fs::path& base, const fs::path& p) {
  auto b = base.begin(), e = base.end();
  auto q = p.begin();
  for (; b != e; ++b, ++q) {
    if (q == p.end() || *b != *q) return false;
  }
  return q != p.end();  // strictly below base
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Result<Tensor> read_external_data(const onnx::TensorProto& p, DataType dt, const Dims& dims,
                                  const std::string& model_dir, const std::string& what) {
  std::string location;
  int64_t offset = 0, length = -1;
  bool has_location = false;
  for (const auto& kv : p.external_data()) {
    if (kv.key() == "location") {
      location = kv.value();
      has_location = true;
    } else if (kv.key() == "offset") {
      if (!parse_size(kv.value(), offset))
        return Status(ErrorCode::kInvalidModel,
                      what + ": external data offset '" + kv.value() + "' is not a non-negative integer");
    } else if (kv.key() == "length") {
      if (!parse_size(kv.value(), length))
        return Status(ErrorCode::kInvalidModel,
                      what + ": external data length '" + kv.value() + "' is not a non-negative integer");
    }
  }
  if (!has_location || location.empty())
    return Status(ErrorCode::kInvalidModel, what + ": external data has no 'location'");
  const std::string file_what = what + " (external file '" + location + "')";
  if (model_dir.empty())
    return Status(
        ErrorCode::kInvalidArgument,
        file_what + ": external data needs the model's folder; parse the model from a file or pass model_dir");
  if (location.find('\0') != std::string::npos)
    return Status(ErrorCode::kInvalidModel, file_what + ": the location contains a NUL byte");
  fs::path rel(location);
  if (rel.is_absolute() || rel.has_root_path())
    return Status(ErrorCode::kInvalidModel,
                  file_what + ": absolute paths are not allowed; the location must be relative to the model's folder");
  for (const auto& part : rel)
    if (part == "..") return Status(ErrorCode::kInvalidModel, file_what + ": '..' is not allowed in the location");

  std::error_code ec;
  fs::path base = fs::canonical(fs::path(model_dir), ec);
  if (ec) return Status(ErrorCode::kIo, file_what + ": model folder '" + model_dir + "': " + ec.message());
  fs::path full = fs::weakly_canonical(base / rel, ec);
  if (ec) return Status(ErrorCode::kIo, file_what + ": " + ec.message());
  if (!is_inside(base, full))
    return Status(ErrorCode::kInvalidModel, file_what + ": resolves to '" + full.string() +
                                                "', outside the model folder '" + base.string() + "'");

  Fd f;
  // The path is canonical (no symlinks left), so O_NOFOLLOW catches a swap made since.
  f.fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (f.fd < 0)
    return Status(ErrorCode::kNotFound, file_what + ": cannot open '" + full.string() + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode))
    return Status(ErrorCode::kInvalidModel, file_what + ": '" + full.string() + "' is not a regular file");
  const int64_t file_size = st.st_size;
  // The 4-/2-bit types are packed in the file and unpacked to one byte each in memory.
  const bool packed = dtype_bits(dt) < 8;
  const size_t nbytes = packed ? packed_size(dims_volume(dims), static_cast<int>(dtype_bits(dt)))
                               : static_cast<size_t>(dims_volume(dims)) * dtype_size(dt);
  if (offset > file_size)
    return Status(ErrorCode::kInvalidModel, file_what + ": offset " + std::to_string(offset) +
                                                " is beyond the end of the file (" + std::to_string(file_size) +
                                                " bytes)");
  if (length < 0) length = file_size - offset;
  if (length > file_size - offset)
    return Status(ErrorCode::kInvalidModel, file_what + ": offset " + std::to_string(offset) + " + length " +
                                                std::to_string(length) + " runs past the end of the file (" +
                                                std::to_string(file_size) + " bytes)");
  if (static_cast<uint64_t>(length) != nbytes)
    return Status(ErrorCode::kInvalidModel, file_what + ": holds " + std::to_string(length) +
                                                " bytes but the tensor (" + dtype_name(dt) + " " +
                                                dims_to_string(dims) + ") needs " + std::to_string(nbytes));
  if (nbytes == 0) return Tensor::empty(dt, dims);

  // Map the range without copying when the data lands on a 64-byte boundary (what
  // kernels expect of a tensor); otherwise copy into an aligned buffer.
  if (offset % 64 == 0 && !packed) {
    const int64_t page = ::sysconf(_SC_PAGESIZE);
    const int64_t map_off = offset - offset % page;
    const size_t map_len = static_cast<size_t>(offset - map_off) + nbytes;
    // Private copy-on-write mapping: a kernel writing into a constant never reaches the file.
    void* m = ::mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, f.fd, map_off);
    if (m != MAP_FAILED) {
      std::shared_ptr<void> owner(m, [map_len](void* q) { ::munmap(q, map_len); });
      return Tensor::view(dt, dims, static_cast<char*>(m) + (offset - map_off), owner);
    }
  }
  Tensor t = packed ? Tensor::empty(DataType::kUInt8, {static_cast<int64_t>(nbytes)}) : Tensor::empty(dt, dims);
  size_t done = 0;
  while (done < nbytes) {
    ssize_t r = ::pread(f.fd, static_cast<char*>(t.data()) + done, nbytes - done, offset + static_cast<int64_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      return Status(ErrorCode::kIo,
                    file_what + ": read failed after " + std::to_string(done) + " bytes" +
                        (r < 0 ? std::string(": ") + std::strerror(errno) : std::string(" (file shrank?)")));
    done += static_cast<size_t>(r);
  }
  if (packed) return unpack_tensor(dt, dims, t.data_as<uint8_t>());
  return t;
}

}  // namespace kiln::onnx_import

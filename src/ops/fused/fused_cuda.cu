// CUDA kernel of FusedElementwise: the program becomes CUDA C++ (fused_codegen.cc),
// compiled by NVRTC for the device's sm_XY on the node's first run, loaded with the
// runtime's library API (cudaLibraryLoadData / cudaLibraryGetKernel: no libcuda
// link, so the binary still loads on machines without a driver) and launched
// with cudaLaunchKernel. Compiled kernels are cached in the process (by program,
// dtypes, variant and arch) and as cubin files on disk (KILN_CACHE_DIR, else
// $XDG_CACHE_HOME/kiln, else ~/.cache/kiln), named by a hash of the source, the
// arch and NVRTC's version.
#include <nvrtc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <unordered_map>

#include "backends/cuda/api.h"
#include "ops/fused/fused_program.h"
#include "ops/unary/eltwise_cuda.cuh"

namespace kiln::ops {
namespace {

using cuda::kMaxRank;
using fused::kMaxInputs;

// The kernels' one argument; KilnFusedArgs in the generated source has the same layout.
struct FusedArgs {
  const void* in[kMaxInputs];
  void* out;
  int64_t n;
  int32_t rank;
  int32_t pad_;
  int64_t dims[kMaxRank];
  int64_t strides[kMaxInputs][kMaxRank];
};
static_assert(sizeof(FusedArgs) == 1240, "FusedArgs must match KilnFusedArgs in fused_codegen.cc");

bool fused_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16; }

uint64_t fnv1a(const void* data, size_t n, uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

std::string nvrtc_version() {
  int major = 0, minor = 0;
  if (nvrtcVersion(&major, &minor) != NVRTC_SUCCESS) return "nvrtc-?";
  return "nvrtc-" + std::to_string(major) + "." + std::to_string(minor);
}

// NVRTC: source -> cubin for sm_<arch>, or the compile log as the error.
Result<std::vector<char>> nvrtc_compile(const std::string& source, int arch) {
  nvrtcProgram prog;
  nvrtcResult r = nvrtcCreateProgram(&prog, source.c_str(), "kiln_fused.cu", 0, nullptr, nullptr);
  if (r != NVRTC_SUCCESS)
    return Status(ErrorCode::kInternal, std::string("nvrtcCreateProgram failed: ") + nvrtcGetErrorString(r));
  const std::string gpu = "--gpu-architecture=sm_" + std::to_string(arch);
  const char* opts[] = {gpu.c_str(), "-std=c++17", "-default-device"};
  r = nvrtcCompileProgram(prog, static_cast<int>(std::size(opts)), opts);
  std::string log;
  size_t log_size = 0;
  if (nvrtcGetProgramLogSize(prog, &log_size) == NVRTC_SUCCESS && log_size > 1) {
    log.resize(log_size);
    if (nvrtcGetProgramLog(prog, log.data()) != NVRTC_SUCCESS) log.clear();
    while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();
  }
  if (r != NVRTC_SUCCESS) {
    nvrtcDestroyProgram(&prog);
    return Status(ErrorCode::kInternal, std::string("NVRTC could not compile the fused kernel (") +
                                            nvrtcGetErrorString(r) + ", " + gpu + "):\n" + log);
  }
  size_t size = 0;
  std::vector<char> cubin;
  r = nvrtcGetCUBINSize(prog, &size);
  if (r == NVRTC_SUCCESS && size > 0) {
    cubin.resize(size);
    r = nvrtcGetCUBIN(prog, cubin.data());
  }
  nvrtcDestroyProgram(&prog);
  if (r != NVRTC_SUCCESS || cubin.empty())
    return Status(ErrorCode::kInternal, std::string("NVRTC produced no cubin for ") + gpu + ": " +
                                            (r != NVRTC_SUCCESS ? nvrtcGetErrorString(r) : "empty"));
  return cubin;
}

Result<size_t> nvrtc_check(const std::string& source, int arch) {
  KILN_ASSIGN_OR_RETURN(std::vector<char> cubin, nvrtc_compile(source, arch));
  return cubin.size();
}

// ---- the disk cache: "<dir>/fused-<hash>.cubin" holding a magic line, the full
// key (source, arch, NVRTC version: a hash collision reads as a miss), the cubin
// and its hash. Anything unreadable or inconsistent is a miss and is rewritten.
constexpr char kCacheMagic[8] = {'K', 'I', 'L', 'N', 'C', 'U', 'B', '1'};

std::filesystem::path cache_dir() {
  if (const char* d = std::getenv("KILN_CACHE_DIR"); d && *d) return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) return std::filesystem::path(d) / "kiln";
  if (const char* d = std::getenv("HOME"); d && *d) return std::filesystem::path(d) / ".cache" / "kiln";
  return {};
}

std::filesystem::path cache_file(const std::string& key) {
  std::filesystem::path dir = cache_dir();
  if (dir.empty()) return {};
  char name[40];
  std::snprintf(name, sizeof(name), "fused-%016llx.cubin",
                static_cast<unsigned long long>(fnv1a(key.data(), key.size())));
  return dir / name;
}

bool read_cached(const std::filesystem::path& path, const std::string& key, std::vector<char>& cubin) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  char magic[8];
  uint64_t key_size = 0, size = 0, hash = 0;
  if (!f.read(magic, 8) || std::memcmp(magic, kCacheMagic, 8) != 0) return false;
  if (!f.read(reinterpret_cast<char*>(&key_size), 8) || key_size != key.size()) return false;
  std::string stored(key.size(), '\0');
  if (!f.read(stored.data(), static_cast<std::streamsize>(key_size)) || stored != key) return false;
  if (!f.read(reinterpret_cast<char*>(&size), 8) || size == 0 || size > (uint64_t{1} << 30)) return false;
  cubin.resize(size);
  if (!f.read(cubin.data(), static_cast<std::streamsize>(size))) return false;
  if (!f.read(reinterpret_cast<char*>(&hash), 8) || hash != fnv1a(cubin.data(), cubin.size())) return false;
  return true;
}

// Best effort: a cache that cannot be written only costs a compile next time.
void write_cached(const std::filesystem::path& path, const std::string& key, const std::vector<char>& cubin) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  std::random_device rd;
  std::filesystem::path tmp = path;
  tmp += ".tmp" + std::to_string(rd());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return;
    const uint64_t key_size = key.size(), size = cubin.size(), hash = fnv1a(cubin.data(), cubin.size());
    f.write(kCacheMagic, 8);
    f.write(reinterpret_cast<const char*>(&key_size), 8);
    f.write(key.data(), static_cast<std::streamsize>(key.size()));
    f.write(reinterpret_cast<const char*>(&size), 8);
    f.write(cubin.data(), static_cast<std::streamsize>(cubin.size()));
    f.write(reinterpret_cast<const char*>(&hash), 8);
    if (!f) {
      f.close();
      std::filesystem::remove(tmp, ec);
      return;
    }
  }
  std::filesystem::rename(tmp, path, ec);  // atomic: readers never see a partial file
  if (ec) std::filesystem::remove(tmp, ec);
}

// ---- the in-process cache
struct Loaded {
  cudaLibrary_t lib = nullptr;
  cudaKernel_t kernels[2] = {nullptr, nullptr};  // flat: scalar, vectorised; broadcast: 32-bit, 64-bit
};

std::mutex& cache_mutex() {
  static std::mutex m;
  return m;
}
// Held across one cache miss (disk read, NVRTC, library load): contexts that
// start on several threads at once compile each kernel once, and NVRTC and the
// library loader never run concurrently.
std::mutex& compile_mutex() {
  static std::mutex m;
  return m;
}
// Entries live as long as the process (their libraries are never unloaded).
std::unordered_map<std::string, Loaded>& loaded_kernels() {
  static auto* m = new std::unordered_map<std::string, Loaded>();
  return *m;
}

Result<Loaded> load_library(const std::vector<char>& cubin, const fused::CodegenMode& mode) {
  Loaded l;
  cudaError_t e = cudaLibraryLoadData(&l.lib, cubin.data(), nullptr, nullptr, 0, nullptr, nullptr, 0);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return Status(ErrorCode::kInternal, std::string("cudaLibraryLoadData failed: ") + cudaGetErrorString(e));
  }
  const char* names[2] = {mode.flat ? fused::kFlatKernel : fused::kBcast32Kernel,
                          mode.flat ? fused::kFlatVecKernel : fused::kBcast64Kernel};
  for (int i = 0; i < 2; ++i) {
    e = cudaLibraryGetKernel(&l.kernels[i], l.lib, names[i]);
    if (e != cudaSuccess) {
      cudaGetLastError();
      cudaLibraryUnload(l.lib);
      return Status(ErrorCode::kInternal,
                    std::string("cudaLibraryGetKernel(") + names[i] + ") failed: " + cudaGetErrorString(e));
    }
  }
  return l;
}

int device_arch(const KernelContext& ctx) {
  const cuda::Env* env = ctx.cuda_env();
  if (env->cc_major > 0) return env->cc_major * 10 + env->cc_minor;
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return major * 10 + minor;
}

// The kernels for this program, dtypes and variant: from the process cache, the
// disk cache, or NVRTC.
Result<Loaded> kernels_for(KernelContext& ctx, const std::string& program_text, const std::vector<DataType>& dts,
                           DataType out, const fused::CodegenMode& mode) {
  const int arch = device_arch(ctx);
  if (arch <= 0) return ctx.error("cannot read the device's compute capability", ErrorCode::kInternal);
  std::string key = program_text + "|";
  for (DataType t : dts) key += std::to_string(static_cast<int>(t)) + ",";
  key += "|" + std::to_string(static_cast<int>(out)) + "|" +
         (mode.flat ? "flat" + std::to_string(mode.scalar_mask) : std::string("bcast")) + "|sm" + std::to_string(arch);
  {
    std::lock_guard<std::mutex> lock(cache_mutex());
    auto it = loaded_kernels().find(key);
    if (it != loaded_kernels().end()) return it->second;
  }
  // Compiling or loading a library inside a stream capture is not allowed; the
  // executor runs each plan once eagerly first, so this is a misuse.
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(cuda::stream_of(ctx), &capturing) != cudaSuccess) cudaGetLastError();
  if (capturing != cudaStreamCaptureStatusNone)
    return ctx.error("the fused kernel must be compiled (run once) before a CUDA graph capture", ErrorCode::kInternal);

  std::lock_guard<std::mutex> compiling(compile_mutex());
  cuda::ExclusiveCapture no_capture;  // loading a module: no capture elsewhere
  {
    std::lock_guard<std::mutex> lock(cache_mutex());
    auto it = loaded_kernels().find(key);
    if (it != loaded_kernels().end()) return it->second;  // compiled while this thread waited
  }
  KILN_ASSIGN_OR_RETURN(fused::Program p, fused::parse_program(program_text, static_cast<int>(dts.size())));
  const std::string source = fused::cuda_source(p, dts, out, mode);
  const std::string disk_key = source + "\n--gpu-architecture=sm_" + std::to_string(arch) + "\n" + nvrtc_version();
  const std::filesystem::path file = cache_file(disk_key);
  std::vector<char> cubin;
  Result<Loaded> lib = Status(ErrorCode::kInternal, "not loaded");
  if (!file.empty() && read_cached(file, disk_key, cubin)) lib = load_library(cubin, mode);
  if (!lib.ok()) {
    auto compiled = nvrtc_compile(source, arch);
    if (!compiled.ok())
      return ctx.error(compiled.status().message() + "\nprogram: " + program_text, ErrorCode::kInternal);
    cubin = std::move(*compiled);
    lib = load_library(cubin, mode);
    if (!lib.ok()) return ctx.error(lib.status().message(), ErrorCode::kInternal);
    if (!file.empty()) write_cached(file, disk_key, cubin);
  }
  std::lock_guard<std::mutex> lock(cache_mutex());
  return loaded_kernels().emplace(key, *lib).first->second;
}

Status fused_cuda(KernelContext& ctx) {
  Tensor& y = ctx.output(0);
  const size_t k = ctx.num_inputs();
  if (k == 0 || k > static_cast<size_t>(kMaxInputs)) return ctx.error("unsupported number of inputs");
  const ir::Attribute* prog = ctx.attrs().find("program");
  if (!prog || prog->kind != ir::Attribute::Kind::kString) return ctx.error("needs the string attribute 'program'");
  if (!fused_float(y.dtype())) return cuda::eltwise::unsupported_dtype(ctx, y.dtype());
  std::vector<DataType> dts;
  for (size_t j = 0; j < k; ++j) {
    if (!ctx.has_input(j)) return ctx.error("input " + std::to_string(j) + " is missing");
    const Tensor& t = ctx.input(j);
    if (!fused_float(t.dtype())) return cuda::eltwise::unsupported_dtype(ctx, t.dtype());
    if (!cuda::eltwise::broadcasts_to(t.dims(), y.dims()))
      return ctx.error("input " + std::to_string(j) + " dims " + dims_to_string(t.dims()) +
                       " do not broadcast to the output dims " + dims_to_string(y.dims()));
    dts.push_back(t.dtype());
  }
  const int64_t n = y.numel();
  if (n == 0) return Status();
  if (y.rank() > kMaxRank) return ctx.error("rank above 8 is not supported", ErrorCode::kUnsupported);

  FusedArgs args{};
  args.out = y.data();
  args.n = n;
  // Flat when every input is full-size (same dims up to leading 1s: same layout)
  // or a single element.
  fused::CodegenMode mode;
  mode.flat = true;
  for (size_t j = 0; j < k; ++j) {
    const Tensor& t = ctx.input(j);
    args.in[j] = t.data();
    if (t.numel() == n) continue;
    if (t.numel() == 1)
      mode.scalar_mask |= 1u << j;
    else
      mode.flat = false;
  }
  unsigned grid = 0;
  int variant = 0;
  if (mode.flat) {
    // Four elements per access when every full-size operand is aligned to four elements.
    bool vec = n >= 4;
    for (size_t j = 0; j < k && vec; ++j)
      if (!((mode.scalar_mask >> j) & 1u)) vec = cuda::eltwise::aligned_to(args.in[j], 4 * dtype_size(dts[j]));
    vec = vec && cuda::eltwise::aligned_to(args.out, 4 * dtype_size(y.dtype()));
    variant = vec ? 1 : 0;
    grid = cuda::grid_for(vec ? (n + 3) / 4 : n);
  } else {
    mode.scalar_mask = 0;
    std::vector<const Dims*> in_dims;
    for (size_t j = 0; j < k; ++j) in_dims.push_back(&ctx.input(j).dims());
    cuda::eltwise::BroadcastPlan<kMaxInputs> plan;
    if (!cuda::eltwise::make_plan<kMaxInputs>(y.dims(), in_dims, plan))
      return ctx.error("broadcast needs more than 8 dims", ErrorCode::kUnsupported);
    args.rank = plan.rank;
    for (int d = 0; d < plan.rank; ++d) {
      args.dims[d] = plan.dims[d];
      for (size_t j = 0; j < k; ++j) args.strides[j][d] = plan.strides[j][d];
    }
    grid = cuda::grid_for(n);
    // 32-bit indices when i + the grid stride cannot overflow.
    const int64_t span = static_cast<int64_t>(grid) * cuda::kBlock;
    variant = cuda::eltwise::fits_int32(n + span) ? 0 : 1;
  }
  KILN_ASSIGN_OR_RETURN(Loaded l, kernels_for(ctx, prog->s, dts, y.dtype(), mode));
  void* params[] = {&args};
  cudaError_t e = cudaLaunchKernel(reinterpret_cast<const void*>(l.kernels[variant]), dim3(grid), dim3(cuda::kBlock),
                                   params, 0, cuda::stream_of(ctx));
  if (e != cudaSuccess) {
    cudaGetLastError();
    return ctx.error(std::string("CUDA kernel fused_elementwise failed to launch: ") + cudaGetErrorString(e),
                     ErrorCode::kInternal);
  }
  return cuda::launch_status(ctx, "fused_elementwise");
}

// fp32/fp16/bf16 inputs of rank <= 8, at most kMaxInputs of them, and a program
// that parses (the output dtype follows from it).
bool fused_applies(const ir::Node& node, const std::vector<TensorType>& in) {
  if (in.empty() || in.size() > static_cast<size_t>(kMaxInputs)) return false;
  std::vector<DataType> dts;
  for (const TensorType& t : in) {
    if (!fused_float(t.dtype)) return false;
    dts.push_back(t.dtype);
  }
  if (!cuda::eltwise::ranks_fit(in)) return false;
  const ir::Attribute* a = node.attrs.find("program");
  if (!a || a->kind != ir::Attribute::Kind::kString) return false;
  auto p = fused::parse_program(a->s, static_cast<int>(in.size()));
  return p.ok() && fused_float(fused::program_dtype(*p, dts));
}

}  // namespace

void register_fused_cuda_kernels(OpRegistry& r) {
  fused::nvrtc_check_hook() = nvrtc_check;
  (void)r.add_cuda_kernel("kiln", "FusedElementwise", FastKernel{"cuda.fused_elementwise", fused_cuda, fused_applies});
}

}  // namespace kiln::ops

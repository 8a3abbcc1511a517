// A kernel timeline for any CUDA program, CUDA graphs included: a CUPTI injection library.
// The driver loads it when CUDA_INJECTION64_PATH names it; it records every kernel's, memset's
// and copy's GPU start and end (CUPTI's concurrent-kernel activity, which does not serialize
// kernels) and, at exit, writes one CSV line each to $KILN_TRACE_OUT (default kernel_trace.csv):
//   start_ns,end_ns,stream,graph_id,grid,block,name (demangled; commas in it become ;)
// bench/kernel_gaps.py turns that into per-inference busy time and the gaps between kernels.
//
// Build (host code only):
//   g++ -O2 -shared -fPIC -I/usr/local/cuda/include bench/kernel_trace.cc -o build/kernel_trace.so
//       -L/usr/local/cuda/lib64 -lcupti
// Use:
//   KILN_TRACE_OUT=t.csv CUDA_INJECTION64_PATH=$PWD/build/kernel_trace.so kiln bench E.kiln --cuda-graph ...
#include <cupti.h>
#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct Rec {
  uint64_t start, end;
  uint32_t stream, graph;
  int gx, gy, gz, bx;
  std::string name;
};

std::mutex g_mu;
std::vector<Rec>* g_recs = nullptr;  // leaked on purpose: read in the atexit handler

constexpr size_t kBufBytes = 8 << 20;

// "void ns::f<__half, 4>(args)" for a mangled name, as ncu prints it.
std::string demangled(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string r = status == 0 && d ? d : name;
  free(d);
  return r;
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(aligned_alloc(8, kBufBytes));
  *size = kBufBytes;
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* rec = nullptr;
  std::lock_guard<std::mutex> lock(g_mu);
  while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
    if (rec->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
      auto* m = reinterpret_cast<CUpti_ActivityMemset4*>(rec);
      g_recs->push_back(
          {m->start, m->end, m->streamId, m->graphId, 0, 0, 0, 0, "[memset " + std::to_string(m->bytes) + " B]"});
    } else if (rec->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
      auto* m = reinterpret_cast<CUpti_ActivityMemcpy6*>(rec);
      g_recs->push_back({m->start, m->end, m->streamId, m->graphId, 0, 0, 0, 0,
                         "[memcpy kind " + std::to_string(m->copyKind) + " " + std::to_string(m->bytes) + " B]"});
    } else if (rec->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || rec->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
      auto* k = reinterpret_cast<CUpti_ActivityKernel10*>(rec);
      g_recs->push_back({k->start, k->end, k->streamId, k->graphId, k->gridX, k->gridY, k->gridZ, k->blockX,
                         k->name ? k->name : "?"});
    }
  }
  free(buffer);
}

void write_trace() {
  cuptiActivityFlushAll(1);
  const char* path = std::getenv("KILN_TRACE_OUT");
  FILE* f = std::fopen(path && *path ? path : "kernel_trace.csv", "w");
  if (!f) return;
  std::lock_guard<std::mutex> lock(g_mu);
  std::fprintf(f, "start_ns,end_ns,stream,graph_id,grid,block,name\n");
  for (const Rec& r : *g_recs) {
    std::string name = demangled(r.name.c_str());  // at exit, not in the buffer callbacks
    for (char& c : name)
      if (c == ',' || c == '"') c = ';';
    std::fprintf(f, "%llu,%llu,%u,%u,%dx%dx%d,%d,%s\n", static_cast<unsigned long long>(r.start),
                 static_cast<unsigned long long>(r.end), r.stream, r.graph, r.gx, r.gy, r.gz, r.bx, name.c_str());
  }
  std::fclose(f);
  std::fprintf(stderr, "kernel_trace: %zu kernels -> %s\n", g_recs->size(), path && *path ? path : "kernel_trace.csv");
}

}  // namespace

extern "C" int InitializeInjection() {
  g_recs = new std::vector<Rec>();
  g_recs->reserve(1 << 20);
  if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY) != CUPTI_SUCCESS) {
    std::fprintf(stderr, "kernel_trace: CUPTI activity could not be enabled\n");
    return 0;
  }
  std::atexit(write_trace);
  return 1;
}

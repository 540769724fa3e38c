// Memory accessors of the kernel bodies, and the hooks of the CPU executor's access tracer.
//
// Kernel bodies read and write global and shared memory through the DYNCONV_LD* / DYNCONV_ST* macros
// below. On the GPU (and in CPU runs without a tracer) they are plain loads and stores. While a
// TraceSink is installed on the calling CPU thread (cpuref/trace_api.cpp), every access is also recorded
// as (current block thread, source site, space, address, bytes); the executors (common/cpu_exec.h) report
// which thread runs and where a phase begins, so the sink can group the accesses of the 32 threads of a
// warp into warp instructions: the k-th access of a site by each thread of a warp within one phase is one
// instruction. Predicated accesses (the *_IF forms) keep that numbering aligned across lanes: a thread
// whose predicate is false still takes its slot, as an inactive lane.
#pragma once

#include "common/math_common.h"

namespace dynconv {

enum class TraceSpace : int { kGlobal = 0, kShared = 1 };
enum class TraceKind : int { kPlain = 0, kGather = 1 };  // kGather: data-dependent bilinear corner reads
enum class TraceCounter : int { kFma = 0, kMma = 1, kSamples = 2, kDescriptors = 3, kCount = 4 };

#if !defined(__CUDA_ARCH__)
class TraceSink {
public:
    virtual ~TraceSink() = default;
    virtual void access(const char* file, int line, TraceSpace space, TraceKind kind, bool store, const void* addr,
                        int bytes, bool active) = 0;
    virtual void thread(int t) = 0;  //!< the next accesses are block thread t's
    virtual void phase() = 0;        //!< a new barrier-separated phase (or block) begins
    virtual void count(TraceCounter c, long long n) = 0;
};

//! The sink of the calling CPU thread (null: not tracing).
inline TraceSink*& trace_sink() {
    static thread_local TraceSink* sink = nullptr;
    return sink;
}
#endif

DYNCONV_HD void trace_thread(int t) {
#if !defined(__CUDA_ARCH__)
    if (TraceSink* s = trace_sink()) s->thread(t);
#else
    (void)t;
#endif
}

DYNCONV_HD void trace_phase() {
#if !defined(__CUDA_ARCH__)
    if (TraceSink* s = trace_sink()) s->phase();
#endif
}

DYNCONV_HD void trace_count(TraceCounter c, long long n) {
#if !defined(__CUDA_ARCH__)
    if (TraceSink* s = trace_sink()) s->count(c, n);
#else
    (void)c; (void)n;
#endif
}

//! Records an access of `bytes` at p without performing it (for accesses the CPU code emulates, e.g. the
//! lanes of a warp-wide matrix load, or vector loads the CPU performs element by element).
DYNCONV_HD void trace_access(const char* file, int line, TraceSpace space, bool store, const void* p, int bytes,
                             bool active = true) {
#if !defined(__CUDA_ARCH__)
    if (TraceSink* s = trace_sink()) s->access(file, line, space, TraceKind::kPlain, store, p, bytes, active);
#else
    (void)file; (void)line; (void)space; (void)store; (void)p; (void)bytes; (void)active;
#endif
}

template <typename T>
DYNCONV_HD T trace_load(const T* p, TraceSpace space, TraceKind kind, const char* file, int line) {
#if !defined(__CUDA_ARCH__)
    if (TraceSink* s = trace_sink()) s->access(file, line, space, kind, false, p, int(sizeof(T)), true);
#else
    (void)space; (void)kind; (void)file; (void)line;
#endif
    return *p;
}

//! *p if `cond`, else `fallback` (p is not dereferenced); an inactive lane of the instruction when !cond.
template <typename T>
DYNCONV_HD T trace_load_if(bool cond, const T* p, T fallback, TraceSpace space, TraceKind kind, const char* file,
                           int line) {
#if !defined(__CUDA_ARCH__)
    if (TraceSink* s = trace_sink()) s->access(file, line, space, kind, false, p, int(sizeof(T)), cond);
#else
    (void)space; (void)kind; (void)file; (void)line;
#endif
    return cond ? *p : fallback;
}

template <typename T, typename V>
DYNCONV_HD void trace_store(T* p, V v, TraceSpace space, const char* file, int line) {
#if !defined(__CUDA_ARCH__)
    if (TraceSink* s = trace_sink()) s->access(file, line, space, TraceKind::kPlain, true, p, int(sizeof(T)), true);
#else
    (void)space; (void)file; (void)line;
#endif
    *p = v;
}

} // namespace dynconv

// Global / shared loads and stores of the kernel bodies (the site is the source line).
#define DYNCONV_LDG(p) ::dynconv::trace_load((p), ::dynconv::TraceSpace::kGlobal, ::dynconv::TraceKind::kPlain, __FILE__, __LINE__)
#define DYNCONV_LDG_IF(c, p, f) \
    ::dynconv::trace_load_if((c), (p), (f), ::dynconv::TraceSpace::kGlobal, ::dynconv::TraceKind::kPlain, __FILE__, __LINE__)
#define DYNCONV_LDG_GATHER_IF(c, p, f) \
    ::dynconv::trace_load_if((c), (p), (f), ::dynconv::TraceSpace::kGlobal, ::dynconv::TraceKind::kGather, __FILE__, __LINE__)
#define DYNCONV_STG(p, v) ::dynconv::trace_store((p), (v), ::dynconv::TraceSpace::kGlobal, __FILE__, __LINE__)
#define DYNCONV_LDS(p) ::dynconv::trace_load((p), ::dynconv::TraceSpace::kShared, ::dynconv::TraceKind::kPlain, __FILE__, __LINE__)
#define DYNCONV_STS(p, v) ::dynconv::trace_store((p), (v), ::dynconv::TraceSpace::kShared, __FILE__, __LINE__)
#define DYNCONV_TRACE_ACCESS(space, store, p, bytes) \
    ::dynconv::trace_access(__FILE__, __LINE__, ::dynconv::TraceSpace::space, (store), (p), (bytes))

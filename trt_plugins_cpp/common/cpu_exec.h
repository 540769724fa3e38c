// CPU executors of the tiled block bodies (common/tile_gemm.h, common/mma_tile.h): every phase for all
// thread ids (or warps) in turn. They tell an installed access tracer (common/trace.h) where each phase
// begins and which thread runs.
#pragma once

#include <memory>
#include <vector>

#include "common/trace.h"

namespace dynconv {

//! Acc: per-thread accumulator type (use an empty struct for blocks that keep none).
template <class Acc, int kThreads>
struct CpuBlockExec {
    std::vector<Acc> acc = std::vector<Acc>(kThreads);
    template <class F>
    void each(F&& f) {
        trace_phase();
        for (int t = 0; t < kThreads; ++t) {
            trace_thread(t);
            f(t, acc[t]);
        }
    }
    void sync() {}
};

struct NoAcc {};

//! Executor of the tensor-core block bodies (common/mma_tile.h): each(f(t)) for thread phases,
//! each_warp(f(warp, acc)) for warp phases, all in turn.
template <class WarpAcc, int kWarps, int kThreads>
struct CpuMmaExec {
    std::vector<WarpAcc> acc = std::vector<WarpAcc>(kWarps);
    template <class F>
    void each(F&& f) {
        trace_phase();
        for (int t = 0; t < kThreads; ++t) {
            trace_thread(t);
            f(t);
        }
    }
    //! Warp phases: the body records its lanes' accesses itself (trace_thread per lane).
    template <class F>
    void each_warp(F&& f) {
        trace_phase();
        for (int w = 0; w < kWarps; ++w) {
            trace_thread(w * 32);
            f(w, acc[w]);
        }
    }
    void sync() {}
};

//! Runs body(bx, by, smem, exec) for every block of a gx x gy grid in turn, each block with a fresh
//! executor (fresh accumulators); the shared memory is reused, as the block bodies write before reading.
template <class Smem, class Exec, class Body>
void run_cpu_grid(long long gx, long long gy, Body&& body) {
    auto sm = std::make_unique<Smem>();
    for (long long by = 0; by < gy; ++by)
        for (long long bx = 0; bx < gx; ++bx) {
            Exec ex;
            body(int(bx), int(by), *sm, ex);
        }
}

} // namespace dynconv

// CPU-only: the TraceSink that turns the recorded accesses of a block body (common/trace.h) into
// warp-instruction counters, per source site:
//   global: requests (warp instructions with an active lane), 32-byte sectors touched, and the ideal
//           sectors for the distinct bytes used (ceil(bytes / 32));
//   shared: wavefronts (per phase of 32 / 16 / 8 lanes for 4- / 8- / 16-byte accesses, the most distinct
//           4-byte words any of the 32 banks must deliver) and the ideal (per phase with an active lane,
//           ceil(its distinct bytes / 128), at least 1): wavefronts / ideal is the bank-conflict factor;
// plus the distinct global sectors read and written (the DRAM footprint of the traced blocks) and the
// work counters (FMA, MMA, bilinear samples and descriptors) the bodies report.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/trace.h"

namespace dynconv {

struct TraceSiteStats {
    std::string name;  // file:line
    TraceSpace space = TraceSpace::kGlobal;
    TraceKind kind = TraceKind::kPlain;
    bool store = false;
    long long instructions = 0, lanes = 0, units = 0, ideal = 0, bytes = 0;  // units: sectors or wavefronts
    double worst = 0.0;  // worst units / ideal of one instruction
};

class AccessCounter : public TraceSink {
public:
    static constexpr int kWarp = 32;

    void access(const char* file, int line, TraceSpace space, TraceKind kind, bool store, const void* addr, int bytes,
                bool active) override {
        const int site = site_id(file, line, space, kind, store);
        const uint64_t occ_key = (uint64_t(uint32_t(thread_)) << 32) | uint32_t(site);
        const int occ = occurrence_[occ_key]++;
        const uint64_t key = (uint64_t(uint32_t(site)) << 40) ^ (uint64_t(uint32_t(thread_ / kWarp)) << 28) ^ uint64_t(occ);
        auto it = pending_index_.find(key);
        int idx;
        if (it == pending_index_.end()) {
            idx = int(pending_.size());
            pending_index_.emplace(key, idx);
            pending_.push_back(Instr{site, bytes, {}, 0u});
        } else {
            idx = it->second;
        }
        Instr& in = pending_[size_t(idx)];
        const int lane = thread_ % kWarp;
        in.addr[lane] = reinterpret_cast<uintptr_t>(addr);
        if (active) in.mask |= 1u << lane;
        if (active && space == TraceSpace::kGlobal) {
            for (uintptr_t s = in.addr[lane] / 32; s <= (in.addr[lane] + uintptr_t(bytes) - 1) / 32; ++s)
                (store ? written_ : read_).insert(s);
        }
    }
    void thread(int t) override { thread_ = t; }
    void phase() override { flush(); }
    void count(TraceCounter c, long long n) override { counters_[int(c)] += n; }

    //! Counts the instructions still pending (call once the traced blocks are done).
    void flush() {
        for (const Instr& in : pending_) account(in);
        pending_.clear();
        pending_index_.clear();
        occurrence_.clear();
    }

    const std::vector<TraceSiteStats>& sites() const { return sites_; }
    long long counter(TraceCounter c) const { return counters_[int(c)]; }
    long long dram_read_bytes() const { return 32LL * (long long)read_.size(); }
    long long dram_write_bytes() const { return 32LL * (long long)written_.size(); }

    //! JSON object of all counters (sites sorted by name).
    std::string json() const {
        std::vector<const TraceSiteStats*> order;
        for (const auto& s : sites_) order.push_back(&s);
        std::sort(order.begin(), order.end(), [](const TraceSiteStats* a, const TraceSiteStats* b) { return a->name < b->name; });
        std::string r = "{\"fma\":" + std::to_string(counter(TraceCounter::kFma)) +
                        ",\"mma\":" + std::to_string(counter(TraceCounter::kMma)) +
                        ",\"samples\":" + std::to_string(counter(TraceCounter::kSamples)) +
                        ",\"descriptors\":" + std::to_string(counter(TraceCounter::kDescriptors)) +
                        ",\"dram_read_bytes\":" + std::to_string(dram_read_bytes()) +
                        ",\"dram_write_bytes\":" + std::to_string(dram_write_bytes()) + ",\"sites\":[";
        for (size_t k = 0; k < order.size(); ++k) {
            const TraceSiteStats& s = *order[k];
            char worst[32];
            std::snprintf(worst, sizeof worst, "%.4f", s.worst);
            r += std::string(k ? "," : "") + "{\"site\":\"" + s.name + "\",\"space\":\"" +
                 (s.space == TraceSpace::kGlobal ? "global" : "shared") + "\",\"gather\":" +
                 (s.kind == TraceKind::kGather ? "true" : "false") + ",\"store\":" + (s.store ? "true" : "false") +
                 ",\"instructions\":" + std::to_string(s.instructions) + ",\"lanes\":" + std::to_string(s.lanes) +
                 ",\"units\":" + std::to_string(s.units) + ",\"ideal\":" + std::to_string(s.ideal) +
                 ",\"bytes\":" + std::to_string(s.bytes) + ",\"worst\":" + worst + "}";
        }
        return r + "]}";
    }

private:
    struct Instr {
        int site, bytes;
        uintptr_t addr[kWarp];
        uint32_t mask;
    };

    int site_id(const char* file, int line, TraceSpace space, TraceKind kind, bool store) {
        const auto key = std::make_pair(std::make_pair(file, line), int(space) * 4 + int(kind) * 2 + int(store));
        auto it = site_ids_.find(key);
        if (it != site_ids_.end()) return it->second;
        const char* base = std::strrchr(file, '/');
        TraceSiteStats s;
        s.name = std::string(base ? base + 1 : file) + ":" + std::to_string(line);
        s.space = space;
        s.kind = kind;
        s.store = store;
        sites_.push_back(s);
        const int id = int(sites_.size()) - 1;
        site_ids_.emplace(key, id);
        return id;
    }

    //! Distinct bytes covered by the active lanes.
    static long long distinct_bytes(const Instr& in, int lo, int hi) {
        std::vector<std::pair<uintptr_t, uintptr_t>> r;
        for (int l = lo; l < hi; ++l)
            if (in.mask >> l & 1u) r.emplace_back(in.addr[l], in.addr[l] + uintptr_t(in.bytes));
        std::sort(r.begin(), r.end());
        long long total = 0;
        uintptr_t end = 0;
        for (const auto& [a, b] : r) {
            const uintptr_t from = std::max(a, end);
            if (b > from) total += (long long)(b - from);
            end = std::max(end, b);
        }
        return total;
    }

    static long long sectors(const Instr& in) {
        std::vector<uintptr_t> s;
        for (int l = 0; l < kWarp; ++l)
            if (in.mask >> l & 1u)
                for (uintptr_t x = in.addr[l] / 32; x <= (in.addr[l] + uintptr_t(in.bytes) - 1) / 32; ++x) s.push_back(x);
        std::sort(s.begin(), s.end());
        return (long long)(std::unique(s.begin(), s.end()) - s.begin());
    }

    //! Wavefronts and their ideal: lanes in phases of 128 bytes' worth (32 / 16 / 8 lanes); per phase the
    //! largest number of distinct 4-byte words one bank must deliver, vs ceil(distinct bytes / 128).
    static std::pair<long long, long long> wavefronts(const Instr& in) {
        const int per_phase = in.bytes >= 16 ? 8 : in.bytes == 8 ? 16 : 32;
        long long total = 0, ideal = 0;
        for (int lo = 0; lo < kWarp; lo += per_phase) {
            std::vector<uintptr_t> words[32];
            bool any = false;
            for (int l = lo; l < lo + per_phase; ++l) {
                if (!(in.mask >> l & 1u)) continue;
                any = true;
                for (uintptr_t w = in.addr[l] / 4; w <= (in.addr[l] + uintptr_t(in.bytes) - 1) / 4; ++w)
                    words[w % 32].push_back(w);
            }
            if (!any) continue;
            size_t worst = 1;
            for (auto& b : words) {
                std::sort(b.begin(), b.end());
                worst = std::max(worst, size_t(std::unique(b.begin(), b.end()) - b.begin()));
            }
            total += (long long)worst;
            ideal += std::max(1LL, (distinct_bytes(in, lo, lo + per_phase) + 127) / 128);
        }
        return {total, ideal};
    }

    void account(const Instr& in) {
        if (!in.mask) return;
        TraceSiteStats& s = sites_[size_t(in.site)];
        const long long bytes = distinct_bytes(in, 0, kWarp);
        long long units, ideal;
        if (s.space == TraceSpace::kGlobal) {
            units = sectors(in);
            ideal = (bytes + 31) / 32;
        } else {
            std::tie(units, ideal) = wavefronts(in);
        }
        s.instructions += 1;
        s.lanes += __builtin_popcount(in.mask);
        s.units += units;
        s.ideal += ideal;
        s.bytes += bytes;
        s.worst = std::max(s.worst, double(units) / double(ideal));
    }

    int thread_ = 0;
    std::vector<Instr> pending_;
    std::unordered_map<uint64_t, int> pending_index_;
    std::unordered_map<uint64_t, int> occurrence_;
    std::map<std::pair<std::pair<const char*, int>, int>, int> site_ids_;
    std::vector<TraceSiteStats> sites_;
    std::unordered_set<uintptr_t> read_, written_;
    long long counters_[int(TraceCounter::kCount)] = {};
};

//! Installs `sink` on the calling thread for the lifetime of the guard.
class TraceScope {
public:
    explicit TraceScope(TraceSink* sink) : prev_(trace_sink()) { trace_sink() = sink; }
    ~TraceScope() { trace_sink() = prev_; }
    TraceScope(const TraceScope&) = delete;
    TraceScope& operator=(const TraceScope&) = delete;

private:
    TraceSink* prev_;
};

} // namespace dynconv

// cuda_shim.h -- just enough CUDA to compile the project's kernels/*.cu as C++17 and run them on
// the CPU, one OS thread per CUDA thread (tests/emulation/README.md).
//
// * threadIdx / blockIdx / blockDim / gridDim are thread_local; a launch starts blockDim threads
//   once and runs the blocks of the grid one after the other with them (a block-end barrier in
//   between), so `static` storage is a faithful per-block __shared__ memory (fake/cupy/_raw.py
//   rewrites `extern __shared__ T name[];` into a pointer to a per-launch buffer of exactly
//   shared_mem bytes, malloc'ed so that AddressSanitizer sees overruns, filled with 0xff before
//   every block).
// * __syncthreads(): a generation barrier on atomics (acquire/release, so ThreadSanitizer sees
//   the ordering it gives and nothing more) sleeping on a futex. Strict CUDA rules are checked:
//   every thread of the block must reach the same __syncthreads (same source line) and none may
//   have exited; a barrier not completed within XS_EMU_TIMEOUT seconds is reported as a deadlock.
// * __shfl_*_sync: the same barrier over the lanes of the mask plus a per-warp slot buffer
//   (double-buffered by the lane's shuffle count); every lane of the mask must exist, be alive and
//   call the same shuffle with the same mask. Warp-synchronous code *without* an explicit sync is
//   not emulated (lanes run freely, so it shows up as a race).
// * atomics: compare-and-swap loops on __atomic builtins (seen by ThreadSanitizer).
// * math: the host libm (may differ from libdevice in the last ulp for hypotf & co.); the
//   __f*_rn / __d*_rn intrinsics are plain IEEE operations (compiled with -ffp-contract=off).
// * launches: argument count, kinds (pointer or scalar), scalar sizes, element sizes and
//   alignment of pointers are checked against the kernel's C++ signature; block <= 1024 threads,
//   dynamic shared memory <= 48 KiB.
// Errors are recorded (first one wins), every waiting thread is released, and the launch returns a
// non-zero status with the message, which the Python side raises.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <ctime>

#ifndef __CUDACC_RTC__
#define __CUDACC_RTC__ 1  // take the same preprocessor branches as NVRTC (cupy.RawModule)
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ static
#define __constant__ static
#define __align__(n) alignas(n)

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) double2 { double x, y; };
struct alignas(8) int2 { int x, y; };
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline double2 make_double2(double x, double y) { return double2{x, y}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }

inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
constexpr int warpSize = 32;

// ------------------------------------------------------------------------------------ math
using std::isfinite;
using std::isinf;
using std::isnan;
using std::abs;
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fdividef(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __saturatef(float a) { return fminf(fmaxf(a, 0.0f), 1.0f); }
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float f) { int v; std::memcpy(&v, &f, 4); return v; }
inline unsigned int __float_as_uint(float f) { unsigned int v; std::memcpy(&v, &f, 4); return v; }
inline float __uint_as_float(unsigned int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
inline long long __double_as_longlong(double d) { long long v; std::memcpy(&v, &d, 8); return v; }
inline int __popc(unsigned int v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __clz(int v) { return v ? __builtin_clz((unsigned)v) : 32; }
inline int __ffs(int v) { return __builtin_ffs(v); }

// ------------------------------------------------------------------------------------ runtime
namespace xs {

// A generation barrier on atomics (happens-before visible to ThreadSanitizer) that sleeps on a futex.
struct Bar {
    std::atomic<unsigned> arrived{0};
    std::atomic<unsigned> gen{0};
    std::atomic<int> line{-1};
    std::atomic<unsigned> mask{0};
};

inline void futex_wait(std::atomic<unsigned>* a, unsigned v, long ms) {
    timespec ts{ms / 1000, (ms % 1000) * 1000000L};
    syscall(SYS_futex, reinterpret_cast<unsigned*>(a), FUTEX_WAIT_PRIVATE, v, &ts, nullptr, 0);
}
inline void futex_wake(std::atomic<unsigned>* a) {
    syscall(SYS_futex, reinterpret_cast<unsigned*>(a), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

struct Warp {
    Bar bar;
    alignas(16) unsigned char slot[2][32][16];
};

struct Launch {
    unsigned nthreads = 0;
    double timeout = 60.0;
    Bar bar;       // __syncthreads
    Bar end;       // between blocks
    std::atomic<unsigned> exited{0};
    std::unique_ptr<std::atomic<unsigned char>[]> alive;  // per thread of the current block
    std::unique_ptr<Warp[]> warps;
    unsigned nwarps = 0;
    unsigned char* dyn = nullptr;  // dynamic shared memory
    size_t dyn_bytes = 0;
    std::atomic<int> failed{0};
    std::mutex em;
    std::string msg;

    void fail(const std::string& s) {
        {
            std::lock_guard<std::mutex> g(em);
            if (msg.empty()) msg = s;
        }
        failed.store(1);
        bar.gen.fetch_add(1);
        futex_wake(&bar.gen);
        end.gen.fetch_add(1);
        futex_wake(&end.gen);
        for (unsigned w = 0; w < nwarps; ++w) {
            warps[w].bar.gen.fetch_add(1);
            futex_wake(&warps[w].bar.gen);
        }
    }
};

inline thread_local Launch* tl_launch = nullptr;
inline thread_local unsigned tl_tid = 0;            // linear thread index in the block
inline thread_local unsigned long tl_warp_count = 0; // shuffles done by this lane (slot parity)

inline std::string where() {
    char b[160];
    std::snprintf(b, sizeof b, "block (%u, %u, %u) thread (%u, %u, %u)", blockIdx.x, blockIdx.y, blockIdx.z,
                  threadIdx.x, threadIdx.y, threadIdx.z);
    return b;
}

// Arrive at b (count participants) and wait for the others; on_complete runs in the last arriver
// before the release. Returns false when the launch has failed (or fails meanwhile).
template <class F>
inline bool arrive(Launch* L, Bar& b, unsigned count, const char* what, F on_complete) {
    const unsigned g = b.gen.load(std::memory_order_acquire);
    if (b.arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == count) {
        on_complete();
        b.arrived.store(0, std::memory_order_relaxed);
        b.line.store(-1, std::memory_order_relaxed);
        b.gen.fetch_add(1, std::memory_order_release);
        futex_wake(&b.gen);
        return !L->failed.load();
    }
    auto t0 = std::chrono::steady_clock::now();
    while (b.gen.load(std::memory_order_acquire) == g) {
        if (L->failed.load()) return false;
        futex_wait(&b.gen, g, 200);
        if (b.gen.load(std::memory_order_acquire) == g &&
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > L->timeout) {
            L->fail(std::string("deadlock: ") + what + " not completed within the timeout, " + where());
            return false;
        }
    }
    return !L->failed.load();
}

inline void syncthreads(int line) {
    Launch* L = tl_launch;
    if (L->failed.load()) return;
    int exp = -1;
    if (!L->bar.line.compare_exchange_strong(exp, line) && exp != line) {
        L->fail("divergent __syncthreads: line " + std::to_string(line) + " and line " + std::to_string(exp) +
                " in the same barrier, " + where());
        return;
    }
    const unsigned g = L->bar.gen.load(std::memory_order_acquire);
    if (L->bar.arrived.fetch_add(1) + 1 == L->nthreads) {
        L->bar.arrived.store(0, std::memory_order_relaxed);
        L->bar.line.store(-1, std::memory_order_relaxed);
        L->bar.gen.fetch_add(1, std::memory_order_release);
        futex_wake(&L->bar.gen);
        return;
    }
    // an exited thread can never arrive; (a thread that exits after passing this very barrier
    // has seen the generation advance, hence the second test)
    if (L->exited.load() && L->bar.gen.load() == g) {
        L->fail("__syncthreads (line " + std::to_string(line) + ") reached after a thread of the block exited, " +
                where());
        return;
    }
    auto t0 = std::chrono::steady_clock::now();
    while (L->bar.gen.load(std::memory_order_acquire) == g) {
        if (L->failed.load()) return;
        futex_wait(&L->bar.gen, g, 200);
        if (L->bar.gen.load(std::memory_order_acquire) == g &&
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > L->timeout) {
            L->fail("deadlock: __syncthreads (line " + std::to_string(line) + ") not completed within the timeout, " +
                    where());
            return;
        }
    }
}

inline void thread_exit() {
    Launch* L = tl_launch;
    L->alive[tl_tid].store(0);
    L->exited.fetch_add(1);
    if (L->bar.arrived.load() > 0 && !L->failed.load()) {
        L->fail("thread exited while " + std::to_string(L->bar.arrived.load()) + " thread(s) of its block wait at "
                "__syncthreads (line " + std::to_string(L->bar.line.load()) + "), " + where());
    }
}

// block-end barrier: the last thread resets the per-block state
inline void block_end() {
    Launch* L = tl_launch;
    arrive(L, L->end, L->nthreads, "block end", [L] {
        L->exited.store(0);
        for (unsigned t = 0; t < L->nthreads; ++t) L->alive[t].store(1);
        if (L->dyn) std::memset(L->dyn, 0xff, L->dyn_bytes);
        for (unsigned w = 0; w < L->nwarps; ++w)
            if (L->warps[w].bar.arrived.load()) L->fail("block ended with lanes waiting at a warp shuffle");
    });
}

template <class T>
inline T shfl(unsigned mask, T v, int line, int mode, int arg, int width) {
    static_assert(sizeof(T) <= 16, "shuffle of a type above 16 bytes");
    Launch* L = tl_launch;
    if (L->failed.load()) return v;
    const unsigned lane = tl_tid & 31u, wi = tl_tid >> 5;
    Warp& w = L->warps[wi];
    if (!(mask & (1u << lane))) {
        L->fail("__shfl_*_sync called by a lane outside its mask, " + where());
        return v;
    }
    for (unsigned l = 0; l < 32; ++l) {  // every lane of the mask must exist and be alive
        if (!(mask & (1u << l))) continue;
        const unsigned t = wi * 32 + l;
        if (t >= L->nthreads || !L->alive[t].load()) {
            L->fail("__shfl_*_sync (line " + std::to_string(line) + ") mask names lane " + std::to_string(l) +
                    (t >= L->nthreads ? " that does not exist, " : " that has exited, ") + where());
            return v;
        }
    }
    const int par = (int)(tl_warp_count++ & 1u);
    std::memcpy(w.slot[par][lane], &v, sizeof(T));
    int exp = -1;
    unsigned em = 0;
    if ((!w.bar.line.compare_exchange_strong(exp, line) && exp != line) ||
        (!w.bar.mask.compare_exchange_strong(em, mask) && em != mask)) {
        L->fail("divergent warp shuffle: line " + std::to_string(line) + " and line " + std::to_string(exp) +
                " (or different masks) in one warp barrier, " + where());
        return v;
    }
    if (!arrive(L, w.bar, (unsigned)__builtin_popcount(mask), "warp shuffle", [&w] { w.bar.mask.store(0); }))
        return v;
    const int base = (int)lane & ~(width - 1), sub = (int)lane & (width - 1);
    int src;
    switch (mode) {
        case 0: src = base + (arg & (width - 1)); break;                       // __shfl_sync
        case 1: src = sub + arg < width ? (int)lane + arg : (int)lane; break;  // down
        case 2: src = sub - arg >= 0 ? (int)lane - arg : (int)lane; break;     // up
        default: src = base + ((sub ^ arg) & (width - 1)); break;              // xor
    }
    if (!(mask & (1u << src))) {
        L->fail("__shfl_*_sync reads lane " + std::to_string(src) + " outside the mask, " + where());
        return v;
    }
    T r;
    std::memcpy(&r, w.slot[par][src], sizeof(T));
    return r;
}

template <class T>
inline T atomic_rmw(T* p, T (*op)(T, T), T v) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomic on a type of size other than 4 or 8");
    T old;
    __atomic_load(p, &old, __ATOMIC_SEQ_CST);
    T nw = op(old, v);
    while (!__atomic_compare_exchange(p, &old, &nw, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) nw = op(old, v);
    return old;
}

inline void* dynamic_smem() { return tl_launch->dyn; }

// ------------------------------------------------------------------------------------ launcher
template <class A>
inline bool check_arg(int i, void* arg, long long size, int kind, std::string& err) {
    using D = std::decay_t<A>;
    char b[256];
    if constexpr (std::is_pointer_v<D>) {
        using E = std::remove_cv_t<std::remove_pointer_t<D>>;
        if (kind != 0) {
            std::snprintf(b, sizeof b, "argument %d: the kernel takes a pointer, got a scalar of %lld bytes", i, size);
            err = b;
            return false;
        }
        if constexpr (!std::is_void_v<E>) {
            if ((long long)sizeof(E) != size) {
                std::snprintf(b, sizeof b, "argument %d: the kernel takes a pointer to %zu-byte elements, got an "
                              "array of %lld-byte elements", i, sizeof(E), size);
                err = b;
                return false;
            }
            const uintptr_t ptr = (uintptr_t)(*(void**)arg);
            if (ptr % alignof(E)) {
                std::snprintf(b, sizeof b, "argument %d: pointer %p not aligned to %zu bytes", i, (void*)ptr, alignof(E));
                err = b;
                return false;
            }
        }
    } else {
        if (kind != 1 || (long long)sizeof(D) != size) {
            std::snprintf(b, sizeof b, "argument %d: the kernel takes a %zu-byte scalar, got %s of %lld bytes", i,
                          sizeof(D), kind == 0 ? "an array" : "a scalar", size);
            err = b;
            return false;
        }
    }
    return true;
}

template <class... A, size_t... I>
inline void call(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::decay_t<A>*>(args[I])...);
}

template <class... A>
inline int launch(void (*f)(A...), const unsigned* grid, const unsigned* block, unsigned long long shmem,
                  void** args, const long long* sizes, const int* kinds, int nargs, double timeout, char* err,
                  int errlen) {
    auto report = [&](const std::string& s) {
        std::snprintf(err, errlen, "%s", s.c_str());
        return 1;
    };
    if (nargs != (int)sizeof...(A)) {
        return report("the kernel takes " + std::to_string(sizeof...(A)) + " arguments, got " + std::to_string(nargs));
    }
    {
        std::string e;
        int i = 0;
        bool ok = true;
        ((ok = ok && check_arg<A>(i, args[i], sizes[i], kinds[i], e), ++i), ...);
        if (!ok) return report(e);
    }
    const unsigned long long nt = (unsigned long long)block[0] * block[1] * block[2];
    if (nt == 0 || nt > 1024 || block[2] > 64) return report("invalid block " + std::to_string(block[0]) + "x" +
                                                             std::to_string(block[1]) + "x" + std::to_string(block[2]));
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[1] > 65535 || grid[2] > 65535 || grid[0] > 2147483647u)
        return report("invalid grid");
    if (shmem > 49152) return report("dynamic shared memory above 48 KiB (needs an opt-in attribute)");
    Launch L;
    L.nthreads = (unsigned)nt;
    L.timeout = timeout;
    L.alive.reset(new std::atomic<unsigned char>[nt]);
    for (unsigned t = 0; t < nt; ++t) L.alive[t].store(1);
    L.nwarps = (unsigned)((nt + 31) / 32);
    L.warps.reset(new Warp[L.nwarps]);
    if (shmem) {
        L.dyn = (unsigned char*)std::malloc(shmem);  // exact size: AddressSanitizer sees overruns
        L.dyn_bytes = shmem;
        std::memset(L.dyn, 0xff, shmem);
    }
    const dim3 g(grid[0], grid[1], grid[2]), b(block[0], block[1], block[2]);
    auto worker = [&](unsigned t) {
        tl_launch = &L;
        tl_tid = t;
        tl_warp_count = 0;
        blockDim = b;
        gridDim = g;
        threadIdx = uint3{t % b.x, (t / b.x) % b.y, t / (b.x * b.y)};
        for (unsigned bz = 0; bz < g.z; ++bz)
            for (unsigned by = 0; by < g.y; ++by)
                for (unsigned bx = 0; bx < g.x; ++bx) {
                    blockIdx = uint3{bx, by, bz};
                    if (!L.failed.load()) call(f, args, std::index_sequence_for<A...>{});
                    thread_exit();
                    block_end();
                    tl_warp_count = 0;
                }
        tl_launch = nullptr;
    };
    std::vector<std::thread> pool;
    pool.reserve(nt);
    for (unsigned t = 0; t < nt; ++t) pool.emplace_back(worker, t);
    for (auto& th : pool) th.join();
    std::free(L.dyn);
    if (L.failed.load()) return report(L.msg);
    return 0;
}

}  // namespace xs

#define __syncthreads() ::xs::syncthreads(__LINE__)
#define __syncwarp(...) ((void)0)
#define __threadfence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define __threadfence_block() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define __shfl_sync(mask, v, src, ...) ::xs::shfl((unsigned)(mask), (v), __LINE__, 0, (src), xs_width(__VA_ARGS__ + 0))
#define __shfl_down_sync(mask, v, d, ...) ::xs::shfl((unsigned)(mask), (v), __LINE__, 1, (d), xs_width(__VA_ARGS__ + 0))
#define __shfl_up_sync(mask, v, d, ...) ::xs::shfl((unsigned)(mask), (v), __LINE__, 2, (d), xs_width(__VA_ARGS__ + 0))
#define __shfl_xor_sync(mask, v, m, ...) ::xs::shfl((unsigned)(mask), (v), __LINE__, 3, (m), xs_width(__VA_ARGS__ + 0))
inline int xs_width(int w) { return w == 0 ? 32 : w; }

template <class T> inline T xs_add(T a, T b) { return a + b; }
template <class T> inline T xs_min(T a, T b) { return b < a ? b : a; }
template <class T> inline T xs_max(T a, T b) { return a < b ? b : a; }
template <class T> inline T xs_exch(T, T b) { return b; }
template <class T> inline T xs_or(T a, T b) { return a | b; }
template <class T> inline T xs_and(T a, T b) { return a & b; }
template <class T> inline T atomicAdd(T* p, T v) { return ::xs::atomic_rmw<T>(p, &xs_add<T>, v); }
template <class T> inline T atomicMin(T* p, T v) { return ::xs::atomic_rmw<T>(p, &xs_min<T>, v); }
template <class T> inline T atomicMax(T* p, T v) { return ::xs::atomic_rmw<T>(p, &xs_max<T>, v); }
template <class T> inline T atomicExch(T* p, T v) { return ::xs::atomic_rmw<T>(p, &xs_exch<T>, v); }
template <class T> inline T atomicOr(T* p, T v) { return ::xs::atomic_rmw<T>(p, &xs_or<T>, v); }
template <class T> inline T atomicAnd(T* p, T v) { return ::xs::atomic_rmw<T>(p, &xs_and<T>, v); }
template <class T> inline T atomicCAS(T* p, T cmp, T v) {
    __atomic_compare_exchange(p, &cmp, &v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}

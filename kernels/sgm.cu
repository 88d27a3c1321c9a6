// sgm.cu -- semi-global matching: aggregation of a cost volume along one scan-line direction.
//
// What it computes
// ----------------
// The NumPy twin xstereo_gpu/stereo/sgm.py::aggregate_costs (its _sweep), operation by operation,
// for one direction r = (dy, dx) (dy, dx in {-1, 0, 1}, not both 0). Along each scan line, from the
// image edge on, for pixel p and disparity index d (0 <= d < D):
//
//   m      = min_k L(p - r, k)
//   t      = min(L(p - r, d), L(p - r, d - 1) + P1, L(p - r, d + 1) + P1, m + P2)
//   L(p,d) = C(p, d) + (t - m)
//   S(p,d) = first ? L(p, d) : S(p, d) + L(p, d)
//
// with the twin's float32 roundings: a + P1, m + P2, t - m, C + (t - m), S + L, each rounded once
// (__fadd_rn / __fsub_rn, never contracted); minima are exact, so S is bit-identical to the twin's.
// The previous pixel of a line's first pixel is "all invalid": L(p - r, k) = big for every k (big =
// INVALID_COST = 1e30f from the host), which gives L = C exactly. Neighbours d - 1 < 0 and
// d + 1 >= D read a padding entry equal to big, which never wins a minimum (every L <= big).
// Invalid disparities carry C = big; big + x rounds back to big for the small x involved.
//
// Layout of the arguments (all C-contiguous)
// ------------------------------------------
//   cost : (H, W, D) float32   C[y, x, d], d fastest
//   sum  : (H, W, D) float32   S, read (unless first) and written in place
//   H, W, D, dy, dx, first : int;  p1, p2, big : float
//
// Launch configuration
// --------------------
//   One thread block per scan line, threads over disparities (as libSGM): template instance
//   sgm_aggregate<DPT> (DPT = disparities per thread, 1, 2, 4 or 8), block (T, 1, 1) with T a
//   multiple of 32, T <= SGM_MAX_THREADS and T * DPT >= D; thread t handles d = t + k T.
//   grid (n_lines, 1, 1): n_lines = H for dy = 0, W for dx = 0, W + H - 1 for diagonals
//   (lines 0..W-1 start on the first row of the sweep, lines W.. on its first column).
//   Dynamic shared memory: 4 * (D + 2 + 32) bytes: the previous pixel's L (padded by one entry
//   at each end) and the per-warp minima. Per step: prefetch the next pixel's C and S, compute L,
//   __syncthreads, store L, warp-shuffle min, __syncthreads, every thread reduces the warp minima.
//   Indices into cost/sum are 64-bit (size_t).
//
// NumPy twin: xstereo_gpu/stereo/sgm.py::aggregate_costs; CuPy binding:
// xstereo_gpu/stereo/_sgm_kernel.py::aggregate_costs_kernel, which launches the directions of
// sgm.py::path_directions in order (first = 1 for the first). Self-contained (no includes), so
// both NVRTC (cupy.RawModule) and nvcc compile it.

#ifndef SGM_MAX_THREADS
#define SGM_MAX_THREADS 1024
#endif

template <int DPT>
__global__ void __launch_bounds__(SGM_MAX_THREADS)
sgm_aggregate(const float* __restrict__ cost, float* __restrict__ sum, int H, int W, int D,
              int dy, int dx, float p1, float p2, float big, int first)
{
    extern __shared__ float sgm_smem[];
    float* prev = sgm_smem;            // D + 2 entries: prev[d + 1] = L(p - r, d)
    float* wmin = sgm_smem + D + 2;    // 32 entries: per-warp minima

    const int tid = threadIdx.x;
    const int T = blockDim.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int nwarps = (T + 31) >> 5;
    const int line = blockIdx.x;

    int y, x;
    if (dy == 0) {
        y = line;
        x = dx > 0 ? 0 : W - 1;
    } else if (line < W) {
        y = dy > 0 ? 0 : H - 1;
        x = line;
    } else {
        const int k = line - W + 1;
        y = dy > 0 ? k : H - 1 - k;
        x = dx > 0 ? 0 : W - 1;
    }

    for (int j = tid; j < D + 2; j += T) prev[j] = big;
    float m = big;

    float cn[DPT], sn[DPT];
    {
        const size_t base = ((size_t)y * (size_t)W + (size_t)x) * (size_t)D;
#pragma unroll
        for (int k = 0; k < DPT; ++k) {
            const int d = tid + k * T;
            cn[k] = d < D ? cost[base + d] : big;
            sn[k] = (d < D && !first) ? sum[base + d] : 0.0f;
        }
    }
    __syncthreads();

    while (y >= 0 && y < H && x >= 0 && x < W) {
        const size_t base = ((size_t)y * (size_t)W + (size_t)x) * (size_t)D;
        float c[DPT], s[DPT];
#pragma unroll
        for (int k = 0; k < DPT; ++k) {
            c[k] = cn[k];
            s[k] = sn[k];
        }
        const int yn = y + dy;
        const int xn = x + dx;
        if (yn >= 0 && yn < H && xn >= 0 && xn < W) {  // prefetch the next pixel of the line
            const size_t bn = ((size_t)yn * (size_t)W + (size_t)xn) * (size_t)D;
#pragma unroll
            for (int k = 0; k < DPT; ++k) {
                const int d = tid + k * T;
                if (d < D) {
                    cn[k] = cost[bn + d];
                    if (!first) sn[k] = sum[bn + d];
                }
            }
        }

        const float mp2 = __fadd_rn(m, p2);
        float L[DPT];
        float lmin = big;
#pragma unroll
        for (int k = 0; k < DPT; ++k) {
            const int d = tid + k * T;
            L[k] = big;
            if (d < D) {
                const float lo = __fadd_rn(prev[d], p1);      // L(p - r, d - 1) + P1
                const float hi = __fadd_rn(prev[d + 2], p1);  // L(p - r, d + 1) + P1
                const float t = fminf(fminf(prev[d + 1], mp2), fminf(lo, hi));
                const float l = __fadd_rn(c[k], __fsub_rn(t, m));
                L[k] = l;
                sum[base + d] = first ? l : __fadd_rn(s[k], l);
                lmin = fminf(lmin, l);
            }
        }
        __syncthreads();  // every thread has read prev

#pragma unroll
        for (int k = 0; k < DPT; ++k) {
            const int d = tid + k * T;
            if (d < D) prev[d + 1] = L[k];
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) lmin = fminf(lmin, __shfl_xor_sync(0xffffffffu, lmin, o));
        if (lane == 0) wmin[warp] = lmin;
        __syncthreads();  // prev and the warp minima are complete

        m = wmin[0];
        for (int w = 1; w < nwarps; ++w) m = fminf(m, wmin[w]);
        y = yn;
        x = xn;
    }
}

#ifndef __CUDACC_RTC__
// nvcc (the CI compile check) instantiates every variant; NVRTC gets them via name_expressions.
template __global__ void sgm_aggregate<1>(const float*, float*, int, int, int, int, int, float, float, float, int);
template __global__ void sgm_aggregate<2>(const float*, float*, int, int, int, int, int, float, float, float, int);
template __global__ void sgm_aggregate<4>(const float*, float*, int, int, int, int, int, float, float, float, int);
template __global__ void sgm_aggregate<8>(const float*, float*, int, int, int, int, int, float, float, float, int);
#endif

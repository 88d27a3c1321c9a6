// block_matching.cu -- dense block matching (SAD + proximity term), parabolic subpixel, both maps.
//
// What it computes
// ----------------
// The NumPy twin xstereo_gpu/stereo/disparity.py::block_match, operation by operation. For a
// reference pixel (y, x) and every integer d in [dmin, dmax]:
//
//   left map  (ref = L, tgt = R):  cost(d) = sum_{dy, dx} |L(y+dy, x+dx) - R(y+dy, x-d+dx)| + prox[d]
//   right map (ref = R, tgt = L):  cost(d) = sum_{dy, dx} |R(y+dy, x+dx) - L(y+dy, x+d+dx)| + prox[d]
//
// dy, dx in [-h, h] (h = B / 2), rows and columns clamped to the image (edge replication, per
// image, as the twin's np.pad(mode="edge")); cost(d) = +inf when the matched column (x - d, resp.
// x + d) lies outside [0, W). prox[d] = float32(B*B * w * |d| / max(|dmin|, |dmax|)), computed in
// the kernel in float64 as the twin computes it ((pw * |d|) / dnorm, pw = B*B * w), then rounded. The sum is separable and in the twin's order: per row, a horizontal sum over dx, then a
// vertical sum of the row sums over dy; sums of n <= 7 terms are sequential float32 additions
// (twin: _box_valid, b <= 7), longer ones accumulate in float64 and are rounded to float32 (twin:
// float64 cumsum; equal up to one float32 ulp in rare ties of the rounding).
//
// A running minimum over d (ascending, strict '<' so the first of equal costs wins) keeps per pixel
// the best cost and its d, the costs at d_best - 1 and d_best + 1 and the best cost outside
// d_best +- 1 (twin: _Tracker.step). Then (twin: _Tracker.finish and the texture rule):
//   valid  = cost(d_best - 1), cost(d_best + 1) finite and d_best != dmax
//   disp   = d_best + clip(0.5 (c- - c+) / (c- - 2 c0 + c+), -0.5, 0.5)   (offset 0 if denom <= 0)
//   cost   = c0 * inv_scale  (inv_scale = float32(1 / B^2))
//   conf   = clip(1 - c0 / second, 0, 1)  (0 if second <= 0)
//   invalid: disp = cost = NaN, conf = 0.
//   texture (only if use_texture): mean |dI/dx| of the reference image over the block
//   (B > 1: forward differences inside the block, sum over B - 1 columns then B rows, times
//   inv_tex = float32(1 / (B (B - 1))); B = 1: np.gradient, central inside, one-sided at the
//   borders); tex < thr -> disp = cost = NaN, conf = 0.
// Every float32 rounding of the twin is reproduced with __fadd_rn/__fsub_rn/__fmul_rn/__fdiv_rn,
// which the compiler never contracts into FMAs. No (D, H, W) cost volume exists anywhere.
//
// Layout of the arguments (all C-contiguous float32 unless stated)
// ----------------------------------------------------------------
//   left, right     : (H, W) rectified views
//   H, W, dmin, dmax, use_texture : int;  inv_scale, inv_tex, thr : float
//   pw, dnorm       : double: B*B * proximity weight, max(|dmin|, |dmax|) (1 if both are 0)
//   disp, cost, conf: (2, H, W) outputs; plane 0 = left map, plane 1 = right map
//
// Launch configuration
// --------------------
//   template instance block_match<B> (B odd, 1 <= B <= 33; B is the block side), block
//   (BM_TX, BM_NY, 1) = (32, 8, 1), grid (ceil(W / BM_TX), ceil(H / BM_TY), 2) with
//   BM_TY = BM_NY * BM_RPT = 32 rows per tile; blockIdx.z = 0 left map, 1 right map.
//   Each thread block loads a reference tile (BM_TY + 2h) x (BM_TX + 2h) once and, per chunk of
//   BM_DC disparities, a target tile (BM_TY + 2h) x (BM_TX + 2h + BM_DC - 1); per d the block
//   writes the horizontal row sums (BM_TY + 2h) x BM_TX to shared memory, then each thread sums
//   them vertically for its BM_RPT output rows and folds the cost into its running minima.
//   Static shared memory: 4 * (BM_TY + 2h) * (2 BM_TX + 4h + BM_DC - 1) bytes (48,896 at B = 33).
//   32-bit indexing: 2 * H * W < 2^31.
//
// NumPy twin: xstereo_gpu/stereo/disparity.py::block_match (and texture_map); CuPy binding:
// xstereo_gpu/stereo/_bm_kernel.py::block_match_kernel. Self-contained (no includes), so both
// NVRTC (cupy.RawModule) and nvcc compile it.

#ifndef BM_TX
#define BM_TX 32   // output columns per tile = threads along x
#endif
#ifndef BM_NY
#define BM_NY 8    // threads along y
#endif
#ifndef BM_RPT
#define BM_RPT 4   // output rows per thread
#endif
#ifndef BM_DC
#define BM_DC 32   // disparities per target tile load
#endif
#define BM_TY (BM_NY * BM_RPT)
#define BM_NT (BM_TX * BM_NY)

__device__ __forceinline__ int bm_clamp(int v, int lo, int hi) { return min(max(v, lo), hi); }

__device__ __forceinline__ float bm_inf() { return __int_as_float(0x7f800000); }
__device__ __forceinline__ float bm_nan() { return __int_as_float(0x7fc00000); }

// Sum of term(0) + ... + term(N - 1) in the twin's order: sequential float32 for N <= 7,
// float64 accumulation rounded once to float32 for N > 7.
template <int N, class F>
__device__ __forceinline__ float bm_box_sum(F term) {
    if constexpr (N > 7) {
        double s = 0.0;
#pragma unroll
        for (int k = 0; k < N; ++k) s += (double)term(k);
        return (float)s;
    } else {
        float s = term(0);
#pragma unroll
        for (int k = 1; k < N; ++k) s = __fadd_rn(s, term(k));
        return s;
    }
}

// Running minimum over d of one pixel of one map (twin: disparity._Tracker).
struct BmTrack {
    float best;     // min over d' <= d
    float best_m1;  // min over d' <= d - 1 (the running best one step back)
    float cprev;    // cost at d_best - 1
    float cnext;    // cost at d_best + 1
    float second;   // min over d' outside d_best +- 1
    float clast;    // cost at the previous d
    int bd;         // d_best
    bool upd_prev;  // the previous d set a new best

    __device__ __forceinline__ void init() {
        best = best_m1 = cprev = cnext = second = clast = bm_inf();
        bd = 0;
        upd_prev = false;
    }

    __device__ __forceinline__ void step(float c, int d) {
        const bool upd = c < best;
        float sec = upd_prev ? second : fminf(second, c);
        if (upd) {
            sec = best_m1;  // a new best at d leaves exactly the d' <= d - 2
            bd = d;
            cprev = clast;
        }
        if (upd_prev) cnext = c;
        second = sec;
        best_m1 = best;
        best = fminf(c, best);
        upd_prev = upd;
        clast = c;
    }
};

template <int B>
__global__ void __launch_bounds__(BM_NT)
block_match(const float* __restrict__ left, const float* __restrict__ right, int H, int W,
            int dmin, int dmax, double pw, double dnorm, float inv_scale, float inv_tex,
            float thr, int use_texture, float* __restrict__ disp, float* __restrict__ cost,
            float* __restrict__ conf) {
    static_assert(B >= 1 && B % 2 == 1, "block side must be odd and positive");
    constexpr int h = B / 2;
    constexpr int RW = BM_TY + 2 * h;  // tile rows incl. halo
    constexpr int CW = BM_TX + 2 * h;  // reference tile columns incl. halo
    constexpr int GW = CW + BM_DC - 1; // target tile columns for one chunk of disparities
    static_assert(4 * RW * (CW + GW + BM_TX) <= 49152, "static shared memory above 48 KiB: block too large");
    __shared__ float ref[RW][CW];
    __shared__ float tgt[RW][GW];
    __shared__ float hs[RW][BM_TX];

    const int dir = blockIdx.z;  // 0: left map, 1: right map
    const float* __restrict__ rimg = dir ? right : left;
    const float* __restrict__ timg = dir ? left : right;
    const int x0 = blockIdx.x * BM_TX;
    const int y0 = blockIdx.y * BM_TY;
    const int tid = threadIdx.y * BM_TX + threadIdx.x;
    const int cx = threadIdx.x;
    const int x = x0 + cx;

    for (int i = tid; i < RW * CW; i += BM_NT) {
        const int r = i / CW, c = i - (i / CW) * CW;
        ref[r][c] = rimg[bm_clamp(y0 - h + r, 0, H - 1) * W + bm_clamp(x0 - h + c, 0, W - 1)];
    }

    BmTrack t[BM_RPT];
#pragma unroll
    for (int j = 0; j < BM_RPT; ++j) t[j].init();

    for (int dc0 = dmin; dc0 <= dmax; dc0 += BM_DC) {
        const int dc1 = min(dc0 + BM_DC - 1, dmax);
        const int smin = dir ? dc0 : -dc1;  // smallest column shift x_tgt - x_ref in the chunk
        // (the previous chunk's last d ended with a barrier after the last read of tgt)
        for (int i = tid; i < RW * GW; i += BM_NT) {
            const int r = i / GW, c = i - (i / GW) * GW;
            tgt[r][c] = timg[bm_clamp(y0 - h + r, 0, H - 1) * W + bm_clamp(x0 - h + smin + c, 0, W - 1)];
        }
        __syncthreads();
        for (int d = dc0; d <= dc1; ++d) {
            const int o = (dir ? d : -d) - smin;  // 0 <= o < BM_DC
            for (int i = tid; i < RW * BM_TX; i += BM_NT) {
                const int r = i / BM_TX, c = i - (i / BM_TX) * BM_TX;
                hs[r][c] = bm_box_sum<B>([&](int k) { return fabsf(__fsub_rn(ref[r][c + k], tgt[r][c + k + o])); });
            }
            __syncthreads();
            const int xo = dir ? x + d : x - d;
            const bool inside = xo >= 0 && xo < W;
            const float pd = (float)__ddiv_rn(__dmul_rn(pw, (double)abs(d)), dnorm);
#pragma unroll
            for (int j = 0; j < BM_RPT; ++j) {
                const int rl = threadIdx.y + j * BM_NY;
                float c = bm_inf();
                if (inside) c = __fadd_rn(bm_box_sum<B>([&](int k) { return hs[rl + k][cx]; }), pd);
                t[j].step(c, d);
            }
            __syncthreads();
        }
    }

    if (x >= W) return;
#pragma unroll
    for (int j = 0; j < BM_RPT; ++j) {
        const int rl = threadIdx.y + j * BM_NY;
        const int y = y0 + rl;
        if (y >= H) continue;
        const BmTrack& s = t[j];
        const float c0 = s.best, cp = s.cprev, cn = s.cnext;
        bool valid = isfinite(cp) && isfinite(cn) && s.bd != dmax;
        float dv = bm_nan(), cv = bm_nan(), qv = 0.0f;
        if (valid) {
            const float denom = __fadd_rn(__fsub_rn(cp, __fmul_rn(2.0f, c0)), cn);
            float off = 0.0f;
            if (denom > 0.0f) off = __fdiv_rn(__fmul_rn(0.5f, __fsub_rn(cp, cn)), denom);
            off = fminf(fmaxf(off, -0.5f), 0.5f);
            dv = __fadd_rn((float)s.bd, off);
            cv = __fmul_rn(c0, inv_scale);
            if (s.second > 0.0f) qv = fminf(fmaxf(__fsub_rn(1.0f, __fdiv_rn(c0, s.second)), 0.0f), 1.0f);
        }
        if (use_texture) {
            float tex;
            if constexpr (B == 1) {
                const float* row = rimg + y * W;
                if (x == 0) tex = __fsub_rn(row[1], row[0]);
                else if (x == W - 1) tex = __fsub_rn(row[W - 1], row[W - 2]);
                else tex = __fmul_rn(__fsub_rn(row[x + 1], row[x - 1]), 0.5f);
                tex = fabsf(tex);
            } else {
                const float sum = bm_box_sum<B>([&](int dy) {
                    return bm_box_sum<B - 1>([&](int k) {
                        return fabsf(__fsub_rn(ref[rl + dy][cx + k + 1], ref[rl + dy][cx + k]));
                    });
                });
                tex = __fmul_rn(sum, inv_tex);
            }
            if (tex < thr) {
                dv = bm_nan();
                cv = bm_nan();
                qv = 0.0f;
            }
        }
        const int idx = (dir * H + y) * W + x;
        disp[idx] = dv;
        cost[idx] = cv;
        conf[idx] = qv;
    }
}

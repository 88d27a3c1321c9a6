// difference_map.cu -- fused elementwise kernels of one batched difference-map (DM) iteration.
//
// What it computes
// ----------------
// One DM step (Elser 2003) on all runs of all views at once, i.e. the NumPy twin
// xstereo_gpu/phasing/algorithms.py::dm_step, split into a few fused kernels around cuFFT:
//
//   dm_prepare   fs = x * fac,  fac = S * (1 + g_S) - g_S    (f_S(x): x inside S, -g_S x outside)
//                sum2[img] = 0                                (fuses the memset of the eps sums)
//                (first step only: afterwards dm_update writes fs for the next step)
//   -- cuFFT forward (unscaled, out of place) of fs -> Y0 and x -> Y1 --
//   dm_modulus   Y *= (valid ? A / max(|Y|, 1e-20f) : 1) * scale   (twin: _modulus_inplace;
//                invalid pixels are left free, a zero |Y| gives A / 1e-20f times Y = 0 exactly as
//                in the twin; scale = 1 / N^2 is the inverse FFT's normalisation, folded in here)
//   -- cuFFT inverse (unscaled, in place) of [Y0, Y1]: Y0 = P_M(f_S(x)) (the estimate), Y1 = P_M(x) --
//   dm_update    d = S * ((1 + g_M) P_M(x) - g_M x) - P_M(f_S(x));   x += beta d
//                fs = x * fac (the next step's FFT input, same support and g_S)
//                sum2[img] += |d|^2      (block reduction, one atomicAdd per block and image)
//   dm_eps       eps[img] = sqrt(sum2[img]) * |beta|;  sum2[img] = 0 (ready for the next step)
//
// and the best-iterate tracking of xstereo_gpu/phasing/runs.py::PhaseRetrieval.update:
//
//   best_flags   flag[img] = eps[img] < best_eps[img];  where flag: best_eps[img] = eps[img]
//   best_copy    where flag[img]: best = S ? estimate : 0
//
// Array passes per step (elementwise kernels; bytes per pixel of each of the V R images, complex64
// = 8 B, support 1 B; r = read, w = write):
//
//   kernel        before (dm_prepare every step)         now (dm_update writes fs)
//   dm_prepare    r x, S; w fs, xc        3 passes 25 B  first step only (after a new x or support)
//   dm_modulus    r Y0, Y1; w Y0, Y1      4 passes 32 B  4 passes 32 B
//   dm_update     r x, Y0, Y1, S; w x     4 passes 33 B  r x, Y0, Y1, S; w x, fs   5 passes 41 B
//   total                                11 passes 90 B  9 passes 73 B
//
// ESTIMATE (counted, not measured) at 45 x 512^2 (V R = 45, 11,796,480 pixels): 1.06 GB per
// iteration before, 0.86 GB now. Not counted, the same in both: the FFTs (2 forward, out of place
// now: fs -> Y0 and x -> Y1 instead of in place on [fs, copy of x]; 2 inverse in place; at least
// one read and one write of each image, 64 B per pixel), the per-view amplitudes and mask read by
// dm_modulus, and best_copy (r est, S; w best: 17 B, for the runs that improved).
//
// The twin's float32 roundings are reproduced operation by operation (__fmul_rn / __fadd_rn /
// __fsub_rn keep the compiler from contracting them into FMAs); parity is tested to rtol ~1e-4
// (tests/test_dm_kernel.py), the FFTs and the eps reduction order being the remaining differences.
//
// Layout of the arguments (all C-contiguous; an "image" is one N x N plane, nn = N * N)
// ---------------------------------------------------------------------------------------
//   x, fs, y, best, est     : float2 (= complex64: re, im), images of nn pixels, image index
//                             img = (k * V + v) * R + r   (k = 0 only, except in dm_modulus where
//                             k = 0, 1 addresses the two halves [Y0, Y1] of the work buffer)
//   support                 : unsigned char (numpy bool), (V, R, N, N) (s_runs = R) or
//                             (V, 1, N, N) (s_runs = 1, broadcast over runs)
//   amp                     : float, (V, 1, N, N) measured amplitudes, FFT order
//   valid                   : unsigned char (numpy bool), (V, 1, N, N), FFT order
//   sum2, eps, best_eps     : float, (V, R)
//   flag                    : unsigned char, (V, R)
//
// Launch configuration
// --------------------
//   Image kernels (dm_prepare, dm_modulus, dm_update, best_copy): block (DM_BLOCK = 256, 1, 1),
//   grid (bx, min(n_img, 65535), 1); each block strides over the pixels of its image(s) with
//   step bx * DM_BLOCK and over images with step gridDim.y.  dm_update needs blockDim.x ==
//   DM_BLOCK (its shared reduction buffer is sized for it).
//   Per-image kernels (dm_eps, best_flags): block (256, 1, 1), grid (ceil(n / 256), 1, 1).
//
// NumPy twin: xstereo_gpu/phasing/algorithms.py (dm_step, _modulus_inplace, support_projection)
// and runs.py (best-iterate selection); CuPy binding: xstereo_gpu/phasing/_dm_kernel.py.
// Self-contained (float2 only, no includes), so both NVRTC (cupy.RawModule) and nvcc compile it.

#ifndef DM_BLOCK
#define DM_BLOCK 256
#endif

#define DM_TINY 1e-20f  // algorithms._TINY: floor of |Y| in the modulus projection

// Index of the support image of image img (img = v * runs + r) for s_runs in {1, runs}.
__device__ __forceinline__ long long dm_support_image(int img, int runs, int s_runs)
{
    return (s_runs == runs) ? (long long)img : (long long)(img / runs);
}

// f_S(x) = x * (S * (1 + g_S) - g_S), as the twin rounds it
__device__ __forceinline__ float2 dm_fs(float2 v, bool in_support, float one_plus_gs, float gs)
{
    const float s = in_support ? 1.0f : 0.0f;
    const float fac = __fsub_rn(__fmul_rn(s, one_plus_gs), gs);
    return make_float2(__fmul_rn(v.x, fac), __fmul_rn(v.y, fac));
}

extern "C" __global__ void dm_prepare(const float2* __restrict__ x,
                                      const unsigned char* __restrict__ support,
                                      float2* __restrict__ fs,
                                      float* __restrict__ sum2,
                                      const int nn, const int n_img, const int runs, const int s_runs,
                                      const float one_plus_gs, const float gs)
{
    for (int img = blockIdx.y; img < n_img; img += gridDim.y) {
        if (blockIdx.x == 0 && threadIdx.x == 0) {
            sum2[img] = 0.0f;
        }
        const long long base = (long long)img * nn;
        const long long sbase = dm_support_image(img, runs, s_runs) * nn;
        for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < nn; p += gridDim.x * blockDim.x) {
            fs[base + p] = dm_fs(x[base + p], support[sbase + p] != 0, one_plus_gs, gs);
        }
    }
}

extern "C" __global__ void dm_modulus(float2* __restrict__ y,
                                      const float* __restrict__ amp,
                                      const unsigned char* __restrict__ valid,
                                      const int nn, const int n_img, const int runs, const int views,
                                      const float scale)
{
    for (int img = blockIdx.y; img < n_img; img += gridDim.y) {
        const long long base = (long long)img * nn;
        const long long abase = (long long)((img / runs) % views) * nn;
        for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < nn; p += gridDim.x * blockDim.x) {
            const float2 v = y[base + p];
            float r = 1.0f;  // free pixel: left untouched
            if (valid[abase + p]) {
                r = __fdiv_rn(amp[abase + p], fmaxf(hypotf(v.x, v.y), DM_TINY));
            }
            r = __fmul_rn(r, scale);
            y[base + p] = make_float2(__fmul_rn(v.x, r), __fmul_rn(v.y, r));
        }
    }
}

extern "C" __global__ void dm_update(float2* __restrict__ x,
                                     const float2* __restrict__ pm_fs,
                                     const float2* __restrict__ pm_x,
                                     const unsigned char* __restrict__ support,
                                     float2* __restrict__ fs_next,
                                     float* __restrict__ sum2,
                                     const int nn, const int n_img, const int runs, const int s_runs,
                                     const float one_plus_gm, const float gm, const float beta,
                                     const float one_plus_gs, const float gs)
{
    __shared__ float warp_sums[DM_BLOCK / 32];
    for (int img = blockIdx.y; img < n_img; img += gridDim.y) {
        const long long base = (long long)img * nn;
        const long long sbase = dm_support_image(img, runs, s_runs) * nn;
        float acc = 0.0f;
        for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < nn; p += gridDim.x * blockDim.x) {
            const float2 xv = x[base + p];
            const float2 a = pm_x[base + p];
            const float2 b = pm_fs[base + p];
            float2 d = make_float2(0.0f, 0.0f);
            const bool in_s = support[sbase + p] != 0;
            if (in_s) {  // twin: f_M = P_M(x) * (1 + g_M) - x * g_M, times S
                d.x = __fsub_rn(__fmul_rn(a.x, one_plus_gm), __fmul_rn(xv.x, gm));
                d.y = __fsub_rn(__fmul_rn(a.y, one_plus_gm), __fmul_rn(xv.y, gm));
            }
            d.x = __fsub_rn(d.x, b.x);  // (x_{n+1} - x_n) / beta
            d.y = __fsub_rn(d.y, b.y);
            acc = __fadd_rn(acc, __fadd_rn(__fmul_rn(d.x, d.x), __fmul_rn(d.y, d.y)));
            const float2 xn = make_float2(__fadd_rn(xv.x, __fmul_rn(d.x, beta)),
                                          __fadd_rn(xv.y, __fmul_rn(d.y, beta)));
            x[base + p] = xn;
            fs_next[base + p] = dm_fs(xn, in_s, one_plus_gs, gs);
        }
        // block reduction of acc: warp shuffles, then the first warp over the warp sums
        for (int off = 16; off > 0; off >>= 1) {
            acc += __shfl_down_sync(0xffffffffu, acc, off);
        }
        const int lane = threadIdx.x & 31;
        const int warp = threadIdx.x >> 5;
        if (lane == 0) {
            warp_sums[warp] = acc;
        }
        __syncthreads();
        if (warp == 0) {
            acc = (lane < DM_BLOCK / 32) ? warp_sums[lane] : 0.0f;
            for (int off = 16; off > 0; off >>= 1) {
                acc += __shfl_down_sync(0xffffffffu, acc, off);
            }
            if (lane == 0) {
                atomicAdd(&sum2[img], acc);
            }
        }
        __syncthreads();  // warp_sums is reused by the next image of this block
    }
}

extern "C" __global__ void dm_eps(float* __restrict__ sum2, float* __restrict__ eps,
                                  const int n, const float abs_beta)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        eps[i] = __fmul_rn(sqrtf(sum2[i]), abs_beta);
        sum2[i] = 0.0f;  // the next step's dm_update accumulates from zero
    }
}

extern "C" __global__ void best_flags(const float* __restrict__ eps, float* __restrict__ best_eps,
                                      unsigned char* __restrict__ flag, const int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        const float e = eps[i];
        const bool better = e < best_eps[i];  // false for NaN, as in NumPy
        flag[i] = better ? 1 : 0;
        if (better) {
            best_eps[i] = e;
        }
    }
}

extern "C" __global__ void best_copy(float2* __restrict__ best, const float2* __restrict__ est,
                                     const unsigned char* __restrict__ support,
                                     const unsigned char* __restrict__ flag,
                                     const int nn, const int n_img, const int runs, const int s_runs)
{
    for (int img = blockIdx.y; img < n_img; img += gridDim.y) {
        if (!flag[img]) {
            continue;  // uniform over the block: the whole image keeps its best
        }
        const long long base = (long long)img * nn;
        const long long sbase = dm_support_image(img, runs, s_runs) * nn;
        for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < nn; p += gridDim.x * blockDim.x) {
            best[base + p] = support[sbase + p] ? est[base + p] : make_float2(0.0f, 0.0f);
        }
    }
}

// knn_outliers.cu -- mean distance of every point of a 3D cloud to its k nearest other points,
// searched on a uniform grid (cell list) built on the device.
//
// NumPy twin (CPU path and test oracle): xstereo_gpu/cloud/outliers.py::knn_mean_distance
// (cKDTree), which this file reproduces bit for bit:
//   * a point is never its own neighbour (skipped by index, so a duplicate at distance 0 counts);
//   * squared distance dx*dx + dy*dy + dz*dz in float64, added left to right with no FMA
//     contraction (__dmul_rn / __dadd_rn), as cKDTree adds them;
//   * sqrt of the k smallest squared distances, summed in ascending order with NumPy's pairwise
//     summation for n <= 128 (8 partial sums, then the remainder), divided by k as np.mean does.
// Binding: xstereo_gpu/cloud/_knn_kernel.py::knn_mean_distance_kernel.
//
// Grid. Cell (cx, cy, cz) of width h covers [lo + c*h, lo + (c+1)*h) per axis; coordinates are
// clamped into [0, n-1], so the border cells extend to infinity and points far outside the grid
// window (outliers) still have a cell. Cell key = (cx*ny + cy)*nz + cz (int64, n <= 2^20 per axis).
// The binding sorts the points by key and lists the non-empty cells (sorted unique keys and their
// start offsets, followed by KNN_NO_CELL sentinels up to length M, so that the list is built on the
// device without the host learning the number of cells), so memory stays O(M) whatever the number
// of grid cells.
//
// Search (one thread per point, in cell-sorted order). Chebyshev rings s = 0, 1, ..., KNN_RINGS of
// cells around the point's cell, each row (X, Y) of a ring found by a binary search in the sorted
// cell keys; a cell is skipped when the distance from the point to its box is at least the current
// k-th distance; the search stops when ring s cannot hold anything closer (distance to the inner
// faces of the ring, minus a rounding slack), when the k-th distance is 0 (nothing can be
// strictly closer; e.g. all points identical) or when no cell is left. Points not settled after
// KNN_RINGS rings (isolated outliers, sparse regions) fall back to a pass over all non-empty cells
// with the same box test. The k smallest squared distances live in a per-thread bounded max-heap
// of KCAP >= k entries (KnnBest), heap-sorted once at the end.
//
// Kernels and arguments (all arrays C-contiguous, M = number of points, C = non-empty cells):
//   knn_cell_keys<T>(pts (M, 3) T, m, lox, loy, loz, inv_h, nx, ny, nz, keys (M,) int64)
//       launch: 1D, one thread per point (any block size; the binding uses 256).
//   knn_mean_distance_grid<KCAP>(xyz (M, 3) float64 sorted by key, order (M,) int64 original index
//       of each sorted point, keys (M,) int64 sorted, cell_keys (n_cells,) int64: the C sorted
//       unique keys, then KNN_NO_CELL up to n_cells >= C (the binding passes n_cells = M),
//       cell_start (n_cells + 1,) int64 (cell c < C holds sorted points cell_start[c] ..
//       cell_start[c+1]-1; cell_start[C] = M), n_cells, m, k (1 <= k <= KCAP, k <= M - 1), lox, loy, loz, h, nx, ny, nz, slack (length
//       unit, >= 0), out (M,) float64 indexed by original point)
//       launch: 1D, one thread per sorted point, 128 threads per block; KCAP in {8,16,32,64,128}.

#ifndef KNN_RINGS
#define KNN_RINGS 3
#endif
#define KNN_NO_CELL 0x7fffffffffffffffLL  // cell_keys past the last non-empty cell

__device__ __forceinline__ int knn_cell_coord(double p, double lo, double inv_h, int n)
{
    double f = floor((p - lo) * inv_h);
    f = fmin(fmax(f, 0.0), (double)(n - 1));  // NaN-free inputs; clamps far points to the border
    return (int)f;
}

template <typename T>
__global__ void knn_cell_keys(const T* __restrict__ pts, long long m, double lox, double loy,
                              double loz, double inv_h, int nx, int ny, int nz,
                              long long* __restrict__ keys)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= m) return;
    int cx = knn_cell_coord((double)pts[3 * i + 0], lox, inv_h, nx);
    int cy = knn_cell_coord((double)pts[3 * i + 1], loy, inv_h, ny);
    int cz = knn_cell_coord((double)pts[3 * i + 2], loz, inv_h, nz);
    keys[i] = ((long long)cx * ny + cy) * nz + cz;
}

// lower bound of the distance along one axis from coordinate p to cell c (border cells unbounded)
__device__ __forceinline__ double knn_axis_gap(double p, int c, int n, double lo, double h)
{
    double g = 0.0;
    if (c > 0) g = fmax(g, (lo + c * h) - p);            // cell starts above p
    if (c < n - 1) g = fmax(g, p - (lo + (c + 1) * h));  // cell ends below p
    return g;
}

// squared lower bound of the distance from (px, py, pz) to the box of cell (X, Y, Z)
__device__ __forceinline__ double knn_cell_lb2(double px, double py, double pz, int X, int Y, int Z,
                                               double lox, double loy, double loz, double h,
                                               int nx, int ny, int nz, double slack)
{
    double gx = fmax(knn_axis_gap(px, X, nx, lox, h) - slack, 0.0);
    double gy = fmax(knn_axis_gap(py, Y, ny, loy, h) - slack, 0.0);
    double gz = fmax(knn_axis_gap(pz, Z, nz, loz, h) - slack, 0.0);
    return gx * gx + gy * gy + gz * gz;
}

// distance lower bound to anything in Chebyshev ring s >= 1 (gap to the inner faces of the ring);
// negative when the ring holds no cell of the grid (the search is complete)
__device__ __forceinline__ double knn_ring_gap(double p, int c, int n, double lo, double h, int s,
                                               bool* exists)
{
    double g = 1e308;
    if (c + s <= n - 1) { g = fmin(g, (lo + (c + s) * h) - p); *exists = true; }
    if (c - s >= 0) { g = fmin(g, p - (lo + (c - s + 1) * h)); *exists = true; }
    return g;
}

// first index in sorted keys[0..n) with keys[idx] >= key
__device__ __forceinline__ long long knn_lower_bound(const long long* __restrict__ keys, long long n,
                                                     long long key)
{
    long long a = 0, b = n;
    while (a < b) {
        long long mid = a + ((b - a) >> 1);
        if (keys[mid] < key) a = mid + 1; else b = mid;
    }
    return a;
}

// The k smallest squared distances seen so far, as a bounded max-heap: d2[0] is the largest of
// them, so a candidate is compared with d2[0] and, when smaller, replaces it and sinks down
// (O(log k) moves instead of an insertion sort's O(k) shifts through local memory).
template <int KCAP>
struct KnnBest {
    double d2[KCAP];
    int cnt;
    int k;
    double kth;  // k-th smallest squared distance so far (the heap's root); +inf until k are held

    __device__ void init(int k_) { cnt = 0; k = k_; kth = __longlong_as_double(0x7ff0000000000000LL); }

    // the root of the heap d2[0..n) is replaced by v, which sinks to its place
    __device__ __forceinline__ void sink(double v, int n)
    {
        int j = 0;
        for (;;) {
            int c = 2 * j + 1;
            if (c >= n) break;
            if (c + 1 < n && d2[c + 1] > d2[c]) ++c;
            if (d2[c] <= v) break;
            d2[j] = d2[c];
            j = c;
        }
        d2[j] = v;
    }

    __device__ __forceinline__ void insert(double v)
    {
        if (cnt < k) {
            int j = cnt++;  // rise from the new leaf
            while (j > 0) {
                const int p = (j - 1) >> 1;
                if (d2[p] >= v) break;
                d2[j] = d2[p];
                j = p;
            }
            d2[j] = v;
            if (cnt == k) kth = d2[0];
        } else if (v < kth) {
            sink(v, k);
            kth = d2[0];
        }
    }

    __device__ __forceinline__ bool exact() const { return cnt == k && kth == 0.0; }

    // heap sort in place: d2[0..k) ascending (once, at the end)
    __device__ void sort_ascending()
    {
        for (int n = k - 1; n > 0; --n) {
            const double top = d2[0];
            sink(d2[n], n);
            d2[n] = top;
        }
    }
};

template <int KCAP>
__device__ __forceinline__ void knn_scan_cell(KnnBest<KCAP>& best, const double* __restrict__ xyz,
                                              long long self, long long a, long long b,
                                              double px, double py, double pz)
{
    for (long long j = a; j < b; ++j) {
        if (j == self) continue;
        double dx = px - xyz[3 * j + 0];
        double dy = py - xyz[3 * j + 1];
        double dz = pz - xyz[3 * j + 2];
        double d2 = __dadd_rn(__dadd_rn(__dmul_rn(dx, dx), __dmul_rn(dy, dy)), __dmul_rn(dz, dz));
        best.insert(d2);
        if (best.exact()) return;
    }
}

template <int KCAP>
__global__ void knn_mean_distance_grid(const double* __restrict__ xyz,
                                       const long long* __restrict__ order,
                                       const long long* __restrict__ keys,
                                       const long long* __restrict__ cell_keys,
                                       const long long* __restrict__ cell_start,
                                       long long n_cells, long long m, int k,
                                       double lox, double loy, double loz, double h,
                                       int nx, int ny, int nz, double slack,
                                       double* __restrict__ out)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= m) return;
    const double px = xyz[3 * i + 0], py = xyz[3 * i + 1], pz = xyz[3 * i + 2];
    const long long key = keys[i];
    const int cz = (int)(key % nz);
    const int cy = (int)((key / nz) % ny);
    const int cx = (int)(key / ((long long)nz * ny));

    KnnBest<KCAP> best;
    best.init(k);
    bool settled = false;

    for (int s = 0; s <= KNN_RINGS && !settled; ++s) {
        if (s > 0) {
            bool exists = false;
            double g = knn_ring_gap(px, cx, nx, lox, h, s, &exists);
            g = fmin(g, knn_ring_gap(py, cy, ny, loy, h, s, &exists));
            g = fmin(g, knn_ring_gap(pz, cz, nz, loz, h, s, &exists));
            if (!exists) { settled = true; break; }  // every cell of the grid has been seen
            g = fmax(g - slack, 0.0);
            if (best.cnt == best.k && g * g >= best.kth) { settled = true; break; }
        }
        for (int X = max(cx - s, 0); X <= min(cx + s, nx - 1) && !settled; ++X) {
            for (int Y = max(cy - s, 0); Y <= min(cy + s, ny - 1) && !settled; ++Y) {
                const bool edge = (abs(X - cx) == s) || (abs(Y - cy) == s);
                const long long row = ((long long)X * ny + Y) * nz;
                const long long klo = row + max(cz - s, 0), khi = row + min(cz + s, nz - 1);
                for (long long c = knn_lower_bound(cell_keys, n_cells, klo);
                     c < n_cells && cell_keys[c] <= khi; ++c) {
                    const int Z = (int)(cell_keys[c] - row);
                    if (!edge && abs(Z - cz) != s) continue;  // interior of the ring: seen already
                    if (best.cnt == best.k &&
                        knn_cell_lb2(px, py, pz, X, Y, Z, lox, loy, loz, h, nx, ny, nz, slack) >= best.kth)
                        continue;
                    knn_scan_cell(best, xyz, i, cell_start[c], cell_start[c + 1], px, py, pz);
                    if (best.exact()) { settled = true; break; }
                }
            }
        }
    }
    if (!settled) {
        // the ring beyond the last one searched
        const int s = KNN_RINGS + 1;
        bool exists = false;
        double g = knn_ring_gap(px, cx, nx, lox, h, s, &exists);
        g = fmin(g, knn_ring_gap(py, cy, ny, loy, h, s, &exists));
        g = fmin(g, knn_ring_gap(pz, cz, nz, loz, h, s, &exists));
        g = fmax(g - slack, 0.0);
        settled = !exists || (best.cnt == best.k && g * g >= best.kth);
    }
    if (!settled) {
        // isolated point: every non-empty cell outside the searched rings, pruned by its box
        for (long long c = 0; c < n_cells && !best.exact(); ++c) {
            const long long ck = cell_keys[c];
            if (ck == KNN_NO_CELL) break;  // the sentinels after the last non-empty cell
            const int Z = (int)(ck % nz);
            const int Y = (int)((ck / nz) % ny);
            const int X = (int)(ck / ((long long)nz * ny));
            if (max(abs(X - cx), max(abs(Y - cy), abs(Z - cz))) <= KNN_RINGS) continue;
            if (best.cnt == best.k &&
                knn_cell_lb2(px, py, pz, X, Y, Z, lox, loy, loz, h, nx, ny, nz, slack) >= best.kth)
                continue;
            knn_scan_cell(best, xyz, i, cell_start[c], cell_start[c + 1], px, py, pz);
        }
    }

    // NumPy's mean of the sorted distances: pairwise summation (n <= 128), then / k
    best.sort_ascending();
    double* a = best.d2;
    const int n = best.k;
    for (int j = 0; j < n; ++j) a[j] = sqrt(a[j]);
    double res;
    if (n < 8) {
        res = -0.0;
        for (int j = 0; j < n; ++j) res = __dadd_rn(res, a[j]);
    } else {
        double r0 = a[0], r1 = a[1], r2 = a[2], r3 = a[3], r4 = a[4], r5 = a[5], r6 = a[6], r7 = a[7];
        int j = 8;
        for (; j < n - (n % 8); j += 8) {
            r0 = __dadd_rn(r0, a[j + 0]); r1 = __dadd_rn(r1, a[j + 1]);
            r2 = __dadd_rn(r2, a[j + 2]); r3 = __dadd_rn(r3, a[j + 3]);
            r4 = __dadd_rn(r4, a[j + 4]); r5 = __dadd_rn(r5, a[j + 5]);
            r6 = __dadd_rn(r6, a[j + 6]); r7 = __dadd_rn(r7, a[j + 7]);
        }
        res = __dadd_rn(__dadd_rn(__dadd_rn(r0, r1), __dadd_rn(r2, r3)),
                        __dadd_rn(__dadd_rn(r4, r5), __dadd_rn(r6, r7)));
        for (; j < n; ++j) res = __dadd_rn(res, a[j]);
    }
    out[order[i]] = __ddiv_rn(res, (double)n);
}

#ifndef __CUDACC_RTC__
// explicit instantiations so that the nvcc -ptx check of CI compiles every template
template __global__ void knn_cell_keys<float>(const float*, long long, double, double, double, double,
                                              int, int, int, long long*);
template __global__ void knn_cell_keys<double>(const double*, long long, double, double, double, double,
                                               int, int, int, long long*);
#define KNN_INSTANTIATE(K)                                                                          \
    template __global__ void knn_mean_distance_grid<K>(const double*, const long long*,             \
        const long long*, const long long*, const long long*, long long, long long, int, double,    \
        double, double, double, int, int, int, double, double*);
KNN_INSTANTIATE(8)
KNN_INSTANTIATE(16)
KNN_INSTANTIATE(32)
KNN_INSTANTIATE(64)
KNN_INSTANTIATE(128)
#undef KNN_INSTANTIATE
#endif

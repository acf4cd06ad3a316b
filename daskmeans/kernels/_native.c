/*
 * Fused assignment and accumulation for few centres, compiled ahead of time.
 *
 * A plain C library (no Python API), built by setuptools when daskmeans is
 * installed and called through ctypes by daskmeans/kernels/_native.py, which
 * releases the GIL for the call. For every row x of X (n x d, C order):
 *
 *   score_j = |c_j|^2 + sum_f x_f (-2 c_jf)   in the data's type, f in order,
 *   label   = the first j with the smallest score (a later centre wins only
 *             when strictly smaller, so a NaN row keeps centre 0),
 *   dist    = max(score_label + |x|^2, 0)     in the data's type (NaN kept),
 *
 * written to labels and dists when they are not NULL; when sums is not NULL,
 * the row's weight (1 when w is NULL) is added to counts[label], the weighted
 * row to sums[label] and the weighted dist to inertia[0], all in double.
 *
 * The centres come as CT (d x K): -2 times the centres, transposed, with K a
 * multiple of DM_G (the caller pads with zero columns and infinite norms, so
 * that a padded centre never wins), and d <= DM_MAX_D.
 *
 * Rows are taken a vector at a time (8 float or 4 double: 32 bytes), DM_G
 * centres at a time, their scores in registers: GCC/Clang vector extensions,
 * which the compiler lowers to the target's instructions (two SSE or NEON
 * registers for one 32-byte vector). On x86-64 Linux each function is also
 * built for AVX2 and FMA and the loader picks the version the CPU runs
 * (target_clones); -DDM_PORTABLE builds the portable code alone (the tests
 * build it so, as a stand-in for the targets without those clones).
 */

#include <stdint.h>

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(DM_PORTABLE)
#define DM_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DM_CLONES
#endif

#define DM_EXPORT __attribute__((visibility("default")))

/* Centres per register tile. */
#define DM_G 4
/* Most features (the transposed rows of a tile live in a buffer of this many vectors). */
#define DM_MAX_D 64

typedef float dm_vf __attribute__((vector_size(32)));
typedef int32_t dm_vfi __attribute__((vector_size(32)));
typedef double dm_vd __attribute__((vector_size(32)));
typedef int64_t dm_vdi __attribute__((vector_size(32)));

#define DM_DEFINE_SWEEP(NAME, T, V, VI, R)                                             \
    DM_EXPORT DM_CLONES void NAME(const T *X, int64_t n, int64_t d, const T *CT,       \
                                  int64_t K, const T *c_sq, const double *w,           \
                                  int64_t *labels, T *dists, double *sums,             \
                                  double *counts, double *inertia)                     \
    {                                                                                  \
        V xt[DM_MAX_D];                                                                \
        double total = 0.0;                                                            \
        for (int64_t i0 = 0; i0 < n; i0 += R) {                                        \
            const int64_t m = n - i0 < R ? n - i0 : R;                                 \
            const T *Xi = X + i0 * d;                                                  \
            V xs = {0};                                                                \
            for (int64_t f = 0; f < d; f++) {                                          \
                V x = {0};                                                             \
                for (int64_t r = 0; r < m; r++) x[r] = Xi[r * d + f];                  \
                xt[f] = x;                                                             \
                xs += x * x;                                                           \
            }                                                                          \
            V best = {0};                                                              \
            VI lab = {0};                                                              \
            for (int64_t g = 0; g < K; g += DM_G) {                                    \
                V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                              \
                a0 += c_sq[g];                                                         \
                a1 += c_sq[g + 1];                                                     \
                a2 += c_sq[g + 2];                                                     \
                a3 += c_sq[g + 3];                                                     \
                const T *ct = CT + g;                                                  \
                for (int64_t f = 0; f < d; f++, ct += K) {                             \
                    const V x = xt[f];                                                 \
                    a0 += x * ct[0];                                                   \
                    a1 += x * ct[1];                                                   \
                    a2 += x * ct[2];                                                   \
                    a3 += x * ct[3];                                                   \
                }                                                                      \
                const V acc[DM_G] = {a0, a1, a2, a3};                                  \
                for (int j = 0; j < DM_G; j++) {                                       \
                    if (g + j == 0) {                                                  \
                        best = a0;                                                     \
                        continue;                                                      \
                    }                                                                  \
                    const VI closer = acc[j] < best;                                   \
                    best = (V)(((VI)acc[j] & closer) | ((VI)best & ~closer));          \
                    lab = (closer & ((VI){0} + (int)(g + j))) | (lab & ~closer);       \
                }                                                                      \
            }                                                                          \
            const V dist = best + xs;                                                  \
            for (int64_t r = 0; r < m; r++) {                                          \
                const int64_t i = i0 + r;                                              \
                T dv = dist[r];                                                        \
                if (!(dv > 0) && dv == dv) dv = 0;                                     \
                const int64_t j = lab[r];                                              \
                if (labels) labels[i] = j;                                             \
                if (dists) dists[i] = dv;                                              \
                if (sums) {                                                            \
                    const double wi = w ? w[i] : 1.0;                                  \
                    const T *x = Xi + r * d;                                           \
                    double *a = sums + j * d;                                          \
                    for (int64_t f = 0; f < d; f++) a[f] += wi * (double)x[f];         \
                    counts[j] += wi;                                                   \
                    total += wi * (double)dv;                                          \
                }                                                                      \
            }                                                                          \
        }                                                                              \
        if (sums) inertia[0] += total;                                                 \
    }

DM_DEFINE_SWEEP(dm_sweep_f32, float, dm_vf, dm_vfi, 8)
DM_DEFINE_SWEEP(dm_sweep_f64, double, dm_vd, dm_vdi, 4)

/* -2 times the centres, transposed, into CT (d x K; the K - k padding columns
 * zero) and their squared norms into c_sq (K; the padding infinite), summed over
 * the features in order in the data's type: what the sweeps take. */
#define DM_DEFINE_PREPARE(NAME, T)                                                     \
    DM_EXPORT DM_CLONES void NAME(const T *C, int64_t k, int64_t d, T *CT, int64_t K,  \
                                  T *c_sq)                                             \
    {                                                                                  \
        for (int64_t f = 0; f < d; f++)                                                \
            for (int64_t j = 0; j < K; j++)                                            \
                CT[f * K + j] = j < k ? (T)-2 * C[j * d + f] : (T)0;                   \
        for (int64_t j = 0; j < K; j++) {                                              \
            if (j >= k) {                                                              \
                c_sq[j] = (T)__builtin_inf();                                          \
                continue;                                                              \
            }                                                                          \
            T s = 0;                                                                   \
            for (int64_t f = 0; f < d; f++) {                                          \
                const T c = C[j * d + f];                                              \
                const T c2 = c * c;                                                    \
                s = s + c2;                                                            \
            }                                                                          \
            c_sq[j] = s;                                                               \
        }                                                                              \
    }

DM_DEFINE_PREPARE(dm_prepare_f32, float)
DM_DEFINE_PREPARE(dm_prepare_f64, double)

/* The sum of a[0:n] in NumPy's order (numpy.add.reduce over a contiguous
 * float64 array: pairwise, blocks of at most 128 summed by 8 accumulators),
 * so that a shift computed here decides convergence exactly as the same
 * shift computed by NumPy. */
DM_EXPORT __attribute__((noinline)) double dm_pairwise_sum(const double *a, int64_t n)
{
    if (n < 8) {
        double res = 0.0;
        for (int64_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        int64_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return dm_pairwise_sum(a, n2) + dm_pairwise_sum(a + n2, n - n2);
}

/* Lloyd iterations of one block held in memory, as the Python fit loop runs
 * them (daskmeans/engine/_lloyd.py): every iteration sweeps X with the centres
 * C (k x d, updated in place), moves every centre to the weighted mean of its
 * rows (the float64 sums over the counts, rounded to the data's type), and
 * records the pass's inertia and the squared shift of the centres (summed in
 * NumPy's order, from the float64 values of the new and old centres). Stops
 * after max_iter iterations (status 0), when the shift is at most tol
 * (status 1) or zero (status 2), or at a pass leaving a cluster empty
 * (status 3: that pass is not applied; the caller relocates the cluster).
 * Returns the iterations applied. Scratch: CT (d x K), c_sq (K), sums (k x d),
 * counts (k), sq (k x d doubles); sizes (k) receives the weights of the last
 * pass applied. */
#define DM_DEFINE_LLOYD(NAME, T, PREPARE, SWEEP)                                       \
    DM_EXPORT int64_t NAME(const T *X, int64_t n, int64_t d, T *C, int64_t k,          \
                           const double *w, int64_t max_iter, double tol, T *CT,       \
                           int64_t K, T *c_sq, double *sums, double *counts,           \
                           double *sq, double *sizes, double *inertia,                 \
                           double *shift, int64_t *status)                             \
    {                                                                                  \
        *status = 0;                                                                   \
        for (int64_t it = 0; it < max_iter; it++) {                                    \
            PREPARE(C, k, d, CT, K, c_sq);                                             \
            for (int64_t i = 0; i < k * d; i++) sums[i] = 0.0;                         \
            for (int64_t j = 0; j < k; j++) counts[j] = 0.0;                           \
            double part = 0.0;                                                         \
            SWEEP(X, n, d, CT, K, c_sq, w, 0, 0, sums, counts, &part);                 \
            for (int64_t j = 0; j < k; j++) {                                          \
                if (!(counts[j] > 0)) {                                                \
                    *status = 3;                                                       \
                    return it;                                                         \
                }                                                                      \
            }                                                                          \
            inertia[it] = 0.0 + part;                                                  \
            for (int64_t j = 0; j < k; j++) sizes[j] = counts[j];                      \
            for (int64_t j = 0; j < k; j++) {                                          \
                for (int64_t f = 0; f < d; f++) {                                      \
                    const int64_t i = j * d + f;                                       \
                    const T c = (T)((0.0 + sums[i]) / counts[j]);                      \
                    const double diff = (double)c - (double)C[i];                      \
                    sq[i] = diff * diff;                                               \
                    C[i] = c;                                                          \
                }                                                                      \
            }                                                                          \
            const double s = dm_pairwise_sum(sq, k * d);                               \
            shift[it] = s;                                                             \
            if (s == 0.0) {                                                            \
                *status = 2;                                                           \
                return it + 1;                                                         \
            }                                                                          \
            if (s <= tol) {                                                            \
                *status = 1;                                                           \
                return it + 1;                                                         \
            }                                                                          \
        }                                                                              \
        return max_iter;                                                               \
    }

DM_DEFINE_LLOYD(dm_lloyd_f32, float, dm_prepare_f32, dm_sweep_f32)
DM_DEFINE_LLOYD(dm_lloyd_f64, double, dm_prepare_f64, dm_sweep_f64)

/* The interface's version and limits, checked by the caller. */
DM_EXPORT int dm_version(void) { return 2; }
DM_EXPORT int dm_group(void) { return DM_G; }
DM_EXPORT int dm_max_features(void) { return DM_MAX_D; }

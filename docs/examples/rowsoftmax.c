/* A compiled kernel library for docs/writing-a-backend.md: row-wise softmax, log_softmax and
 * logsumexp over contiguous rows (class axis last), float and double, and softmax's vector-Jacobian
 * product. The shifted algorithm with a plain running sum in the input's precision: what the model
 * algorithm of docs/metrics.md allows (float32 outputs accumulate in float32).
 *
 * Built by ctypes_kernel_backend.py with: gcc -O2 -shared -fPIC rowsoftmax.c -o librowsoftmax.so -lm
 */
#include <math.h>
#include <stddef.h>

#define DEFINE(T, SUF, EXP, LOG)                                                           \
void softmax_##SUF(const T *x, T *y, size_t rows, size_t n) {                             \
    for (size_t r = 0; r < rows; ++r) {                                                    \
        const T *xr = x + r * n; T *yr = y + r * n;                                        \
        T m = -INFINITY, s = 0;                                                            \
        for (size_t j = 0; j < n; ++j) if (xr[j] > m || isnan(xr[j])) m = xr[j];           \
        for (size_t j = 0; j < n; ++j) { yr[j] = EXP(xr[j] - m); s += yr[j]; }             \
        for (size_t j = 0; j < n; ++j) yr[j] = yr[j] / s;                                  \
    }                                                                                      \
}                                                                                          \
void log_softmax_##SUF(const T *x, T *y, size_t rows, size_t n) {                         \
    for (size_t r = 0; r < rows; ++r) {                                                    \
        const T *xr = x + r * n; T *yr = y + r * n;                                        \
        T m = -INFINITY, s = 0;                                                            \
        for (size_t j = 0; j < n; ++j) if (xr[j] > m || isnan(xr[j])) m = xr[j];           \
        for (size_t j = 0; j < n; ++j) s += EXP(xr[j] - m);                                \
        T ls = LOG(s);                                                                     \
        for (size_t j = 0; j < n; ++j) yr[j] = (xr[j] - m) - ls;                           \
    }                                                                                      \
}                                                                                          \
void logsumexp_##SUF(const T *x, T *y, size_t rows, size_t n) {                           \
    for (size_t r = 0; r < rows; ++r) {                                                    \
        const T *xr = x + r * n;                                                           \
        T m = -INFINITY, s = 0;                                                            \
        for (size_t j = 0; j < n; ++j) if (xr[j] > m || isnan(xr[j])) m = xr[j];           \
        if (isinf(m)) { y[r] = m; continue; }   /* the limits: +inf, or -inf for all -inf */ \
        for (size_t j = 0; j < n; ++j) s += EXP(xr[j] - m);                                \
        y[r] = m + LOG(s);                                                                 \
    }                                                                                      \
}                                                                                          \
void softmax_vjp_##SUF(const T *x, const T *v, T *g, size_t rows, size_t n) {             \
    softmax_##SUF(x, g, rows, n);                 /* g holds p, then the gradient */        \
    for (size_t r = 0; r < rows; ++r) {                                                    \
        T *gr = g + r * n; const T *vr = v + r * n; T c = 0;                               \
        for (size_t j = 0; j < n; ++j) c += gr[j] * vr[j];                                 \
        for (size_t j = 0; j < n; ++j) gr[j] = gr[j] * (vr[j] - c);                        \
    }                                                                                      \
}

DEFINE(float, f32, expf, logf)
DEFINE(double, f64, exp, log)

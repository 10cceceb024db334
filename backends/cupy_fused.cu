// softmaxbench "cupy-fused": the project's own softmax-family kernels.
//
// One CUDA source without any #include, compiled at run time by NVRTC (cupy.RawModule, one
// template instantiation per op, dtype and launch kind); `nvcc -arch=sm_90 -c -DSBX_INSTANTIATE_ALL`
// compiles every instantiation in the tests.
//
// Algorithm (Milakov & Gimelshein, "Online normalizer calculation for softmax", 2018): a single
// sweep over each row keeps a running maximum m and the sum s of exp(x - m), rescaling s when m
// grows; the threads of a row merge their (m, s) pairs with a warp butterfly (and, for one block
// per row, a reduction across warps); a second sweep writes the normalised outputs. With one block
// per row the second sweep reads the row back from shared memory when it fits, so DRAM sees one
// read and one write per element, the minimum.
//
// Storage float16 / bfloat16 / float32 accumulate in float32, float64 in float64. Loads and
// stores are 16-byte vectors when the row allows (N = 16 / sizeof(storage) elements per vector).
// Rows are contiguous with the softmax axis last (the Python side moves it there).
// Launch kinds: KIND_WARP, one warp per row and several rows per block (rows of <= 1024
// elements); KIND_BLOCK, one block per row.
//
// Special values: a NaN anywhere in a row gives a NaN row (the maximum propagates NaN); an all
// -inf row gives NaN for softmax/log_softmax and -inf for logsumexp (its limit); a +inf gives a
// NaN row (documented convention "nan_row_for_posinf") except logsumexp, which returns +inf.
// Cross-entropy skips classes whose target mass times weight is 0, so 0 * -inf never makes a NaN.
//
// backends/cupy_fused_emulation.py mirrors this algorithm step by step in NumPy; keep them in step.

typedef unsigned short u16;
typedef long long i64;

#define FULL_MASK 0xffffffffu

enum { OP_SOFTMAX = 0, OP_LOG_SOFTMAX = 1, OP_LOGSUMEXP = 2, OP_SOFTMAX_VJP = 3, OP_LOG_SOFTMAX_VJP = 4,
       OP_CE = 5, OP_CE_GRAD = 6 };
enum { KIND_WARP = 0, KIND_BLOCK = 1 };
// What the third accumulator sums: nothing, exp(x - m) * v (rescaled with s), or a plain sum.
enum { AUX_NONE = 0, AUX_SCALED = 1, AUX_PLAIN = 2 };

// ---- storage types: load into the accumulation type A, store rounding to nearest even -----------
struct F32 {
  typedef float S; typedef float A;
  static __device__ __forceinline__ float load(float v) { return v; }
  static __device__ __forceinline__ float store(float v) { return v; }
};
struct F64 {
  typedef double S; typedef double A;
  static __device__ __forceinline__ double load(double v) { return v; }
  static __device__ __forceinline__ double store(double v) { return v; }
};
struct F16 {
  typedef u16 S; typedef float A;
  static __device__ __forceinline__ float load(u16 h) {
    float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
  }
  static __device__ __forceinline__ u16 store(float f) {
    u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
  }
};
struct BF16 {
  typedef u16 S; typedef float A;
  static __device__ __forceinline__ float load(u16 h) { return __uint_as_float(((unsigned)h) << 16); }
  static __device__ __forceinline__ u16 store(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x0040u);  // NaN stays a quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                           // round to nearest even
    return (u16)(u >> 16);
  }
};

// ---- accumulation-type math ----------------------------------------------------------------------
__device__ __forceinline__ float ex(float a) { return expf(a); }
__device__ __forceinline__ double ex(double a) { return exp(a); }
__device__ __forceinline__ float lg(float a) { return logf(a); }
__device__ __forceinline__ double lg(double a) { return log(a); }
template <typename A> __device__ __forceinline__ A neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return __uint_as_float(0xff800000u); }
template <> __device__ __forceinline__ double neg_inf<double>() {
  return __longlong_as_double((i64)0xfff0000000000000ULL);
}
// max that propagates NaN (fmax would drop it and hide a NaN row behind a finite maximum)
template <typename A> __device__ __forceinline__ A nanmax(A a, A b) { return (a > b || a != a) ? a : b; }

template <typename A> struct State { A m, s, aux; };

template <typename A> __device__ __forceinline__ State<A> identity() {
  State<A> r; r.m = neg_inf<A>(); r.s = A(0); r.aux = A(0); return r;
}

template <typename A, int AUX> __device__ __forceinline__ State<A> merge(State<A> a, State<A> b) {
  State<A> r;
  r.m = nanmax(a.m, b.m);
  if (r.m == neg_inf<A>()) {  // nothing but -inf so far on both sides: both sums are 0
    r.s = A(0);
    r.aux = AUX == AUX_PLAIN ? a.aux + b.aux : A(0);
    return r;
  }
  const A fa = ex(a.m - r.m), fb = ex(b.m - r.m);
  r.s = a.s * fa + b.s * fb;
  r.aux = AUX == AUX_SCALED ? a.aux * fa + b.aux * fb : AUX == AUX_PLAIN ? a.aux + b.aux : A(0);
  return r;
}

// Fold N elements (one vector load) into a thread's state: rescale once if the maximum grows.
template <typename A, int AUX, int N>
__device__ __forceinline__ void update(State<A>& st, const A (&xv)[N], const A (&av)[N]) {
  A vmax = xv[0];
#pragma unroll
  for (int i = 1; i < N; ++i) vmax = nanmax(vmax, xv[i]);
  if (!(vmax <= st.m)) {  // a larger value, or a NaN
    const A m_new = nanmax(st.m, vmax);
    const A f = ex(st.m - m_new);
    st.s *= f;
    if (AUX == AUX_SCALED) st.aux *= f;
    st.m = m_new;
  }
  if (AUX == AUX_PLAIN) {
#pragma unroll
    for (int i = 0; i < N; ++i) st.aux += av[i];
  }
  if (st.m != neg_inf<A>()) {  // while everything is -inf, exp(x - m) would be exp(NaN)
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const A e = ex(xv[i] - st.m);
      st.s += e;
      if (AUX == AUX_SCALED) st.aux += e * av[i];
    }
  }
}

// Butterfly over the 32 lanes, then every lane takes lane 0's result: with fused multiply-adds
// merge(a, b) and merge(b, a) can round differently, and all lanes must normalise alike.
template <typename A, int AUX> __device__ __forceinline__ State<A> warp_allreduce(State<A> st) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    State<A> other;
    other.m = __shfl_xor_sync(FULL_MASK, st.m, offset);
    other.s = __shfl_xor_sync(FULL_MASK, st.s, offset);
    other.aux = __shfl_xor_sync(FULL_MASK, st.aux, offset);
    st = merge<A, AUX>(st, other);
  }
  st.m = __shfl_sync(FULL_MASK, st.m, 0);
  st.s = __shfl_sync(FULL_MASK, st.s, 0);
  st.aux = __shfl_sync(FULL_MASK, st.aux, 0);
  return st;
}

template <typename A, int AUX, int KIND> __device__ __forceinline__ State<A> allreduce(State<A> st) {
  st = warp_allreduce<A, AUX>(st);
  if (KIND == KIND_WARP) return st;
  __shared__ State<A> partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
  __syncthreads();  // the buffer may still be read by a previous reduction of this row
  if (lane == 0) partial[warp] = st;
  __syncthreads();
  if (warp == 0) {
    State<A> r = lane < n_warps ? partial[lane] : identity<A>();
    r = warp_allreduce<A, AUX>(r);
    if (lane == 0) partial[0] = r;
  }
  __syncthreads();
  return partial[0];
}

// ---- one row -------------------------------------------------------------------------------------
template <typename S, int N> struct alignas(sizeof(S) * N) Pack { S v[N]; };

extern __shared__ __align__(16) unsigned char sbx_row_cache[];

template <typename Tr> struct Args {
  const typename Tr::S* x;  // logits (n_rows, n_cols)
  const typename Tr::S* v;  // cotangent, or probability targets (n_rows, n_cols)
  const i64* t;             // class-index targets (n_rows)
  const typename Tr::S* w;  // class weights (n_cols)
  typename Tr::S* y;        // (n_rows, n_cols), or (n_rows) for logsumexp
  typename Tr::A* row_loss; // cross-entropy: loss of each row (n_rows)
  typename Tr::A* row_weight;  // cross-entropy: the row's share of the mean's denominator
  i64 n_rows, n_cols;
  int target_probs, has_weight, has_ignore;
  i64 ignore_index;
  typename Tr::A eps, scale;  // label smoothing; gradient scale (1 or 1 / mean's denominator)
};

// Cross-entropy's weight a_j = q'_j * w_j of class j (q' the smoothed target distribution).
template <typename Tr>
__device__ __forceinline__ typename Tr::A ce_mass(const Args<Tr>& p, i64 row, i64 j, i64 label) {
  typedef typename Tr::A A;
  A q = p.target_probs ? Tr::load(p.v[row * p.n_cols + j]) : A(j == label ? 1 : 0);
  if (p.eps > A(0)) q = q * (A(1) - p.eps) + p.eps / A(p.n_cols);
  return p.has_weight ? q * Tr::load(p.w[j]) : q;
}

template <typename Tr, int OP, int KIND, int N>
__device__ void row_op(const Args<Tr>& p, i64 row, int tid, int n_threads, bool use_cache) {
  typedef typename Tr::S S;
  typedef typename Tr::A A;
  const int AUX = OP == OP_SOFTMAX_VJP ? AUX_SCALED
                  : (OP == OP_LOG_SOFTMAX_VJP || OP == OP_CE_GRAD) ? AUX_PLAIN : AUX_NONE;
  const bool needs_v = OP == OP_SOFTMAX_VJP || OP == OP_LOG_SOFTMAX_VJP;
  const bool cache = KIND == KIND_BLOCK && use_cache && (OP <= OP_LOG_SOFTMAX_VJP && OP != OP_LOGSUMEXP);
  const i64 n_packs = p.n_cols / N;
  const S* xr = p.x + row * p.n_cols;
  const S* vr = needs_v ? p.v + row * p.n_cols : (const S*)0;
  S* yr = p.y + row * p.n_cols;
  Pack<S, N>* cx = reinterpret_cast<Pack<S, N>*>(sbx_row_cache);
  Pack<S, N>* cv = reinterpret_cast<Pack<S, N>*>(sbx_row_cache + ((p.n_cols * sizeof(S) + 15) / 16) * 16);

  // Cross-entropy with class indices: the row's label and weight; an ignored row is all zeros.
  i64 label = -1;
  A w_label = A(1);
  if (OP >= OP_CE && !p.target_probs) {
    label = p.t[row];
    if (p.has_ignore && label == p.ignore_index) {
      if (OP == OP_CE_GRAD) {
        for (i64 j = tid; j < p.n_cols; j += n_threads) yr[j] = Tr::store(A(0));
      } else if (tid == 0) {
        p.row_loss[row] = A(0);
        p.row_weight[row] = A(0);
      }
      return;
    }
    if (p.has_weight) w_label = Tr::load(p.w[label]);
  }

  // Sweep 1: online maximum and sum (and the op's third accumulator).
  State<A> st = identity<A>();
  for (i64 k = tid; k < n_packs; k += n_threads) {
    const Pack<S, N> px = reinterpret_cast<const Pack<S, N>*>(xr)[k];
    if (cache) cx[k] = px;
    A xv[N], av[N];
#pragma unroll
    for (int i = 0; i < N; ++i) { xv[i] = Tr::load(px.v[i]); av[i] = A(0); }
    if (needs_v) {
      const Pack<S, N> pv = reinterpret_cast<const Pack<S, N>*>(vr)[k];
      if (cache) cv[k] = pv;
#pragma unroll
      for (int i = 0; i < N; ++i) av[i] = Tr::load(pv.v[i]);
    } else if (OP == OP_CE_GRAD) {
#pragma unroll
      for (int i = 0; i < N; ++i) av[i] = ce_mass<Tr>(p, row, k * N + i, label);
    }
    update<A, AUX, N>(st, xv, av);
  }
  st = allreduce<A, AUX, KIND>(st);
  const A pos_inf = -neg_inf<A>();
  const A log_s = lg(st.s);

  if (OP == OP_LOGSUMEXP) {
    if (tid == 0) p.y[row] = Tr::store(st.m == pos_inf ? pos_inf : st.m + log_s);
    return;
  }
  if (OP == OP_CE) {
    // -log_softmax(x)_j = log(s) - (x_j - m): never lse - x_j, whose rounding of lse = m + log(s)
    // loses log(s) entirely when |m| is huge (rows near finfo.max or finfo.min).
    A loss;
    if (!p.target_probs && p.eps == A(0)) {  // only the label's class has mass
      loss = w_label * (log_s - (Tr::load(xr[label]) - st.m));
    } else {  // sweep 2: sum_j a_j (log(s) - (x_j - m)), skipping a_j = 0 (0 * inf would be NaN)
      State<A> acc = identity<A>();
      for (i64 j = tid; j < p.n_cols; j += n_threads) {
        const A a = ce_mass<Tr>(p, row, j, label);
        if (a != A(0)) acc.aux += a * (log_s - (Tr::load(xr[j]) - st.m));
      }
      loss = allreduce<A, AUX_PLAIN, KIND>(acc).aux;
    }
    if (tid == 0) {
      p.row_loss[row] = loss;
      p.row_weight[row] = p.target_probs ? A(1) : w_label;
    }
    return;
  }

  // Sweep 2: the normalised write, reading the row back from shared memory when it is cached.
  const A dot = st.aux / st.s;  // softmax_vjp: sum_j y_j v_j
  for (i64 k = tid; k < n_packs; k += n_threads) {
    const Pack<S, N> px = cache ? cx[k] : reinterpret_cast<const Pack<S, N>*>(xr)[k];
    Pack<S, N> pv;
    if (needs_v) pv = cache ? cv[k] : reinterpret_cast<const Pack<S, N>*>(vr)[k];
    Pack<S, N> out;
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const A x = Tr::load(px.v[i]);
      A r;
      if (OP == OP_SOFTMAX) {
        r = ex(x - st.m) / st.s;
      } else if (OP == OP_LOG_SOFTMAX) {
        r = (x - st.m) - log_s;
      } else if (OP == OP_SOFTMAX_VJP) {
        r = ex(x - st.m) / st.s * (Tr::load(pv.v[i]) - dot);
      } else if (OP == OP_LOG_SOFTMAX_VJP) {
        r = Tr::load(pv.v[i]) - ex(x - st.m) / st.s * st.aux;
      } else {  // OP_CE_GRAD: scale * (A p_j - a_j), A = sum_j a_j
        const A prob = ex(x - st.m) / st.s;
        r = p.scale * (st.aux * prob - ce_mass<Tr>(p, row, k * N + i, label));
      }
      out.v[i] = Tr::store(r);
    }
    reinterpret_cast<Pack<S, N>*>(yr)[k] = out;
  }
}

template <typename Tr> struct VecWidth { enum { value = 16 / sizeof(typename Tr::S) }; };

template <typename Tr, int OP, int KIND>
__global__ void __launch_bounds__(1024) sbx_kernel(
    const typename Tr::S* x, const typename Tr::S* v, const i64* t, const typename Tr::S* w,
    typename Tr::S* y, typename Tr::A* row_loss, typename Tr::A* row_weight,
    i64 n_rows, i64 n_cols, int vec_ok, int use_cache, int target_probs, int has_weight,
    int has_ignore, i64 ignore_index, double eps, double scale) {
  Args<Tr> p;
  p.x = x; p.v = v; p.t = t; p.w = w; p.y = y; p.row_loss = row_loss; p.row_weight = row_weight;
  p.n_rows = n_rows; p.n_cols = n_cols; p.target_probs = target_probs; p.has_weight = has_weight;
  p.has_ignore = has_ignore; p.ignore_index = ignore_index;
  p.eps = (typename Tr::A)eps; p.scale = (typename Tr::A)scale;
  const i64 row = KIND == KIND_WARP ? (i64)blockIdx.x * blockDim.y + threadIdx.y : (i64)blockIdx.x;
  const int n_threads = KIND == KIND_WARP ? 32 : blockDim.x;
  if (row >= n_rows) return;  // a whole warp (KIND_WARP) or nothing (KIND_BLOCK: grid = n_rows)
  if (vec_ok) {
    row_op<Tr, OP, KIND, VecWidth<Tr>::value>(p, row, threadIdx.x, n_threads, use_cache != 0);
  } else {
    row_op<Tr, OP, KIND, 1>(p, row, threadIdx.x, n_threads, use_cache != 0);
  }
}

#if defined(SBX_INSTANTIATE_ALL) || defined(SBX_INSTANTIATE_TRAIT)
// Every (op, kind) of every dtype (or of -DSBX_INSTANTIATE_TRAIT=F32|F64|F16|BF16 only), so that
// `nvcc -c` compiles them; NVRTC instantiates on demand.
#define SBX_INSTANTIATE_KIND(TR, OP)                                                          \
  template __global__ void sbx_kernel<TR, OP, KIND_WARP>(                                    \
      const TR::S*, const TR::S*, const i64*, const TR::S*, TR::S*, TR::A*, TR::A*, i64, i64,  \
      int, int, int, int, int, i64, double, double);                                         \
  template __global__ void sbx_kernel<TR, OP, KIND_BLOCK>(                                   \
      const TR::S*, const TR::S*, const i64*, const TR::S*, TR::S*, TR::A*, TR::A*, i64, i64,  \
      int, int, int, int, int, i64, double, double);
#define SBX_INSTANTIATE(TR)                                                                  \
  SBX_INSTANTIATE_KIND(TR, OP_SOFTMAX) SBX_INSTANTIATE_KIND(TR, OP_LOG_SOFTMAX)              \
  SBX_INSTANTIATE_KIND(TR, OP_LOGSUMEXP) SBX_INSTANTIATE_KIND(TR, OP_SOFTMAX_VJP)            \
  SBX_INSTANTIATE_KIND(TR, OP_LOG_SOFTMAX_VJP) SBX_INSTANTIATE_KIND(TR, OP_CE)               \
  SBX_INSTANTIATE_KIND(TR, OP_CE_GRAD)
#ifdef SBX_INSTANTIATE_TRAIT
SBX_INSTANTIATE(SBX_INSTANTIATE_TRAIT)
#else
SBX_INSTANTIATE(F32)
SBX_INSTANTIATE(F64)
SBX_INSTANTIATE(F16)
SBX_INSTANTIATE(BF16)
#endif
#endif

// Depthwise K x K convolution (stride 1, same padding, K = 3, 5 or 7) on channels-last (B, H, W, C) float32 maps,
// C a multiple of 16, with the elementwise work of RMT's blocks around it fused in.
//
// Why by hand: RMT's blocks run three depthwise convs each (CPE 3x3, LCE 5x5, the ConvFFN's 3x3 on the widest
// activation), each followed or preceded by a pass of elementwise work: x + conv(x) (CPE, FFN), conv(v) + y (LCE), and
// in the FFN GELU before the conv. oneDNN's depthwise kernel reaches ~30 GFLOP/s on these maps and its weight gradient
// for 5x5 kernels 7-15x its forward; aten runs each elementwise op as its own pass over memory. Here:
//   forward      out = bias + conv(a) + res,   a = x or GELU(x) (computed once per row into a small buffer), res =
//                none, a itself ("self": x + conv(x), or GELU(h) + conv(GELU(h))) or another map (LCE);
//   input grad   the same kernel with the flipped weights on g, res = g for a self residual, and for GELU the result
//                times GELU'(h): dh = GELU'(h) (conv^T(g) + g) in one pass;
//   weight grad  dW[t, c] = sum g * a (shifted), dbias = sum g, a recomputed from x per row (never stored).
// One row of outputs at a time, the K*K weights of a W-channel block (vec.h) in registers, NB adjacent outputs sharing
// the loaded inputs. Work splits into (image, row chunk) tasks across OpenMP threads.
//
// Built at first use with short_attention.cpp into one library by swinrmt/layers/cpu_kernels.py, called via ctypes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <omp.h>

#include "vec.h"

namespace {

// erf(x) = x P(x^2) / Q(x^2) on [-3.92, 3.92], clamped outside (erf(3.92) = 1 - 2e-8): a (5, 5) rational fit whose
// coefficients are all positive, so Horner's rule is well conditioned; |error| < 4e-7 in float32 arithmetic. Fitted by
// benchmarks/speed/fit_erf.py. It replaced Abramowitz & Stegun 7.1.26 (the formula of PyTorch's vectorized erf: a
// division, an exp and two selects): on an AVX2 EPYC, whole rmt_tiny steps take 0.979x (inference) and 0.985x
// (training) as long with this one (benchmarks/speed/ab_switch.py kernels --base a961473).
inline vf verf(vf x) {
    const vf c = splat(3.92f);
    x = x > c ? c : x;
    x = x < -c ? -c : x;
    const vf z = x * x;
    vf p = splat(2.034579211e-06f), q = splat(3.806827226e-05f);
    p = p * z + 2.874654019e-04f;
    q = q * z + 1.188074937e-03f;
    p = p * z + 3.868263448e-03f;
    q = q * z + 1.517219935e-02f;
    p = p * z + 5.306029692e-02f;
    q = q * z + 1.150845140e-01f;
    p = p * z + 1.927642822e-01f;
    q = q * z + 5.041645765e-01f;
    p = p * z + 1.128378987e+00f;
    q = q * z + 1.0f;
    return x * p / q;
}
inline vf vgelu(vf x) { return 0.5f * x * (1.0f + verf(x * 0.70710678118654752f)); }
inline vf vgelu_grad(vf x) {
    return 0.5f * (1.0f + verf(x * 0.70710678118654752f)) + x * 0.39894228040143268f * vexp(-0.5f * x * x);
}

// Rows of output per task: whole images when there are enough of them, else chunks (a GELU buffer then recomputes
// the K - 1 halo rows of each chunk).
int64_t rows_per_task(int64_t B, int64_t H, int threads) {
    if (B >= 2 * threads) return H;
    const int64_t parts = (2 * threads + B - 1) / B;
    return std::max<int64_t>(1, (H + parts - 1) / parts);
}

// The K input rows of output row y: buffer rows (GELU) or rows of x, a zero row outside the map.
struct Rows {
    const float* x;     // image n of x
    int64_t row;        // x's row stride
    const float* buf;   // GELU rows y0 - P .. (nullptr: read x)
    int64_t first;      // the buffer's first row
    int64_t H, WC;
    const float* zeros;
    const float* at(int64_t iy) const {
        if (iy < 0 || iy >= H) return zeros;
        return buf ? buf + (iy - first) * WC : x + iy * row;
    }
};

// GELU of rows [lo, hi) of image x into buf (row lo at buf[0]).
void gelu_rows(const float* x, int64_t row, int64_t lo, int64_t hi, int64_t WC, float* buf) {
    for (int64_t iy = lo; iy < hi; ++iy) {
        const float* src = x + iy * row;
        float* dst = buf + (iy - lo) * WC;
        for (int64_t i = 0; i < WC; i += W) storeu(dst + i, vgelu(loadu(src + i)));
    }
}

// acc[o] += the taps of output columns ox .. ox + NB - 1, all inside the row.
template <int K, int NB>
inline void taps(const vf* wv, const float* const* r, int64_t ox, int64_t C, vf* acc) {
    constexpr int P = K / 2;
#pragma GCC unroll 8
    for (int ky = 0; ky < K; ++ky) {
        const float* base = r[ky] + (ox - P) * C;
#pragma GCC unroll 16
        for (int j = 0; j < K + NB - 1; ++j) {
            const vf in = loadu(base + j * C);
#pragma GCC unroll 8
            for (int o = 0; o < NB; ++o) {
                const int kx = j - o;
                if (kx >= 0 && kx < K) acc[o] += wv[ky * K + kx] * in;
            }
        }
    }
}

// The taps of output column ox = E (LEFT) or Wd - 1 - E, skipping columns outside the row (compile-time checks, so
// the weights stay in registers).
template <int K, int E, bool LEFT>
inline vf edge_taps(const vf* wv, const float* const* r, int64_t ox, int64_t C, vf acc) {
    constexpr int P = K / 2;
#pragma GCC unroll 8
    for (int ky = 0; ky < K; ++ky)
#pragma GCC unroll 8
        for (int kx = 0; kx < K; ++kx)
            if (LEFT ? E + kx - P >= 0 : E - (kx - P) >= 0) acc += wv[ky * K + kx] * loadu(r[ky] + (ox + kx - P) * C);
    return acc;
}

// What one output gets before and after its taps: bias + residual, then times GELU'(post).
struct Out {
    vf bias;
    const float* res;  // row of the residual (channel block applied), or nullptr
    int64_t res_step;
    const float* post;  // row of h for GELU'(h), or nullptr
    float* out;
    int64_t out_step;
    int64_t C;
    vf init(int64_t ox) const { return res ? bias + loadu(res + ox * res_step) : bias; }
    void store(int64_t ox, vf acc) const {
        if (post) acc *= vgelu_grad(loadu(post + ox * C));
        storeu(out + ox * out_step, acc);
    }
};

template <int K, int E>
struct Edges {
    static void run(const vf* wv, const float* const* r, int64_t Wd, int64_t C, const Out& o) {
        Edges<K, E - 1>::run(wv, r, Wd, C, o);
        constexpr int e = E - 1;
        o.store(e, edge_taps<K, e, true>(wv, r, e, C, o.init(e)));
        o.store(Wd - 1 - e, edge_taps<K, e, false>(wv, r, Wd - 1 - e, C, o.init(Wd - 1 - e)));
    }
};
template <int K>
struct Edges<K, 0> {
    static void run(const vf*, const float* const*, int64_t, int64_t, const Out&) {}
};

// One output row, all channel blocks; rows narrower than the kernel check every tap.
template <int K>
void conv_row(const float* const* rows, const float* w, const float* b, const float* res, int64_t res_step,
              const float* post, float* out, int64_t out_step, int64_t Wd, int64_t C) {
    constexpr int P = K / 2, NB = K <= 3 ? 4 : 2;
    for (int64_t c = 0; c < C; c += W) {
        vf wv[K * K];
        for (int t = 0; t < K * K; ++t) wv[t] = loadu(w + t * C + c);
        const float* r[K];
        for (int ky = 0; ky < K; ++ky) r[ky] = rows[ky] + c;
        const Out o{b ? loadu(b + c) : vf{}, res ? res + c : nullptr, res_step, post ? post + c : nullptr, out + c,
                    out_step, C};
        if (Wd < K) {
            for (int64_t ox = 0; ox < Wd; ++ox) {
                vf acc = o.init(ox);
                for (int ky = 0; ky < K; ++ky)
                    for (int kx = 0; kx < K; ++kx) {
                        const int64_t ix = ox + kx - P;
                        if (ix >= 0 && ix < Wd) acc += loadu(w + (ky * K + kx) * C + c) * loadu(r[ky] + ix * C);
                    }
                o.store(ox, acc);
            }
            continue;
        }
        Edges<K, P>::run(wv, r, Wd, C, o);
        int64_t ox = P;
        for (; ox + NB + P <= Wd; ox += NB) {
            vf acc[NB];
            for (int j = 0; j < NB; ++j) acc[j] = o.init(ox + j);
            taps<K, NB>(wv, r, ox, C, acc);
            for (int j = 0; j < NB; ++j) o.store(ox + j, acc[j]);
        }
        for (; ox + P < Wd; ++ox) {
            vf acc[1] = {o.init(ox)};
            taps<K, 1>(wv, r, ox, C, acc);
            o.store(ox, acc[0]);
        }
    }
}

// Calls row(thread, n, y, r) for every output row, r the K input rows of a (x's or GELU(x)'s, zero rows outside
// the map), split into (image, row chunk) tasks across threads. x: strides (n, row), pixels C apart.
template <int K, class Row>
void for_each_row(const float* x, const int64_t* xs, bool act, int64_t B, int64_t H, int64_t Wd, int64_t C,
                  int threads, Row&& row) {
    constexpr int P = K / 2;
    const int64_t R = rows_per_task(B, H, threads), chunks = (H + R - 1) / R, WC = Wd * C;
    const std::vector<float> zeros(WC + W, 0.0f);
#pragma omp parallel num_threads(threads)
    {
        std::vector<float> buf(act ? (R + 2 * P) * WC : 0);
        const int thread = omp_get_thread_num();
#pragma omp for schedule(static)
        for (int64_t t = 0; t < B * chunks; ++t) {
            const int64_t n = t / chunks, y0 = (t % chunks) * R, y1 = std::min(H, y0 + R);
            const float* xn = x + n * xs[0];
            const int64_t lo = std::max<int64_t>(0, y0 - P), hi = std::min(H, y1 + P);
            if (act) gelu_rows(xn, xs[1], lo, hi, WC, buf.data());
            const Rows rows{xn, xs[1], act ? buf.data() : nullptr, lo, H, WC, zeros.data()};
            for (int64_t y = y0; y < y1; ++y) {
                const float* r[K];
                for (int ky = 0; ky < K; ++ky) r[ky] = rows.at(y + ky - P);
                row(thread, n, y, r);
            }
        }
    }
}

// strides: x (n, row), res (n, row, pixel), post (n, row), out (n, row, pixel); x's and post's pixels are C apart.
template <int K>
void forward_all(const float* x, const float* w, const float* b, const float* res, bool self_res, bool act,
                 const float* post, float* out, int64_t B, int64_t H, int64_t Wd, int64_t C, const int64_t* s,
                 int threads) {
    constexpr int P = K / 2;
    for_each_row<K>(x, s, act, B, H, Wd, C, threads, [&](int, int64_t n, int64_t y, const float* const* r) {
        const float* rr = self_res ? r[P] : res ? res + n * s[2] + y * s[3] : nullptr;
        conv_row<K>(r, w, b, rr, self_res ? C : s[4], post ? post + n * s[5] + y * s[6] : nullptr,
                    out + n * s[7] + y * s[8], s[9], Wd, C);
    });
}

// acc[t] += g * a at tap t for output columns E (LEFT) or Wd - 1 - E.
template <int K, int E, bool LEFT>
inline void edge_wgrad(vf* acc, const float* const* r, int64_t ox, int64_t C, vf g) {
    constexpr int P = K / 2;
#pragma GCC unroll 8
    for (int ky = 0; ky < K; ++ky)
#pragma GCC unroll 8
        for (int kx = 0; kx < K; ++kx)
            if (LEFT ? E + kx - P >= 0 : E - (kx - P) >= 0) acc[ky * K + kx] += g * loadu(r[ky] + (ox + kx - P) * C);
}

template <int K, int E>
struct EdgesW {
    static void run(vf* acc, const float* const* r, const float* g, int64_t Wd, int64_t C) {
        EdgesW<K, E - 1>::run(acc, r, g, Wd, C);
        constexpr int e = E - 1;
        const vf gl = loadu(g + e * C), gr = loadu(g + (Wd - 1 - e) * C);
        acc[K * K] += gl + gr;
        edge_wgrad<K, e, true>(acc, r, e, C, gl);
        edge_wgrad<K, e, false>(acc, r, Wd - 1 - e, C, gr);
    }
};
template <int K>
struct EdgesW<K, 0> {
    static void run(vf*, const float* const*, const float*, int64_t, int64_t) {}
};

// part[t * C + c] += sum over one output row of g * a (tap t), part[K*K * C + c] += sum of g.
template <int K>
void wgrad_row(const float* const* rows, const float* g, float* part, int64_t Wd, int64_t C) {
    constexpr int P = K / 2;
    for (int64_t c = 0; c < C; c += W) {
        vf acc[K * K + 1];
        for (int t = 0; t <= K * K; ++t) acc[t] = vf{};
        const float* r[K];
        for (int ky = 0; ky < K; ++ky) r[ky] = rows[ky] + c;
        const float* gc = g + c;
        if (Wd < K) {
            float* pc = part + c;
            for (int64_t ox = 0; ox < Wd; ++ox) {
                const vf gv = loadu(gc + ox * C);
                storeu(pc + K * K * C, loadu(pc + K * K * C) + gv);
                for (int ky = 0; ky < K; ++ky)
                    for (int kx = 0; kx < K; ++kx) {
                        const int64_t ix = ox + kx - P;
                        float* d = pc + (ky * K + kx) * C;
                        if (ix >= 0 && ix < Wd) storeu(d, loadu(d) + gv * loadu(r[ky] + ix * C));
                    }
            }
            continue;
        }
        EdgesW<K, P>::run(acc, r, gc, Wd, C);
        for (int64_t ox = P; ox + P < Wd; ++ox) {
            const vf gv = loadu(gc + ox * C);
            acc[K * K] += gv;
#pragma GCC unroll 8
            for (int ky = 0; ky < K; ++ky) {
                const float* base = r[ky] + (ox - P) * C;
#pragma GCC unroll 8
                for (int kx = 0; kx < K; ++kx) acc[ky * K + kx] += gv * loadu(base + kx * C);
            }
        }
        for (int t = 0; t <= K * K; ++t) storeu(part + t * C + c, loadu(part + t * C + c) + acc[t]);
    }
}

// strides: x (n, row), g (n, row); both with pixels C apart. dwb: (K*K + 1, C), the bias gradient last.
template <int K>
void wgrad_all(const float* x, const float* g, bool act, float* dwb, int64_t B, int64_t H, int64_t Wd, int64_t C,
               const int64_t* s, int threads) {
    const int64_t n_out = (K * K + 1) * C;
    std::vector<float> parts((size_t)threads * n_out, 0.0f);  // one partial sum per thread
    for_each_row<K>(x, s, act, B, H, Wd, C, threads, [&](int thread, int64_t n, int64_t y, const float* const* r) {
        wgrad_row<K>(r, g + n * s[2] + y * s[3], parts.data() + (size_t)thread * n_out, Wd, C);
    });
    for (int64_t i = 0; i < n_out; ++i) {
        float sum = 0.0f;
        for (int t = 0; t < threads; ++t) sum += parts[(size_t)t * n_out + i];
        dwb[i] = sum;
    }
}

}  // namespace

// out = bias + conv(a) + residual [times GELU'(post)], a = GELU(x) if act else x; the residual is a itself
// (self_res) or res. w: (K*K, C) tap-major. strides: x (n, row), res (n, row, pixel), post (n, row), out (n, row,
// pixel). Returns 1 for an unsupported K or C.
extern "C" int dwconv_forward(const float* x, const float* w, const float* b, const float* res, int self_res, int act,
                              const float* post, float* out, int64_t B, int64_t H, int64_t Wd, int64_t C, int64_t K,
                              const int64_t* strides, int threads) {
    if (C % W) return 1;
    switch (K) {
        case 3: forward_all<3>(x, w, b, res, self_res, act, post, out, B, H, Wd, C, strides, threads); return 0;
        case 5: forward_all<5>(x, w, b, res, self_res, act, post, out, B, H, Wd, C, strides, threads); return 0;
        case 7: forward_all<7>(x, w, b, res, self_res, act, post, out, B, H, Wd, C, strides, threads); return 0;
    }
    return 1;
}

// dwb (K*K + 1, C) = the weight gradient (tap-major) and, last, the bias gradient. strides: x (n, row), g (n, row).
extern "C" int dwconv_weight_grad(const float* x, const float* g, int act, float* dwb, int64_t B, int64_t H,
                                  int64_t Wd, int64_t C, int64_t K, const int64_t* strides, int threads) {
    if (C % W) return 1;
    switch (K) {
        case 3: wgrad_all<3>(x, g, act, dwb, B, H, Wd, C, strides, threads); return 0;
        case 5: wgrad_all<5>(x, g, act, dwb, B, H, Wd, C, strides, threads); return 0;
        case 7: wgrad_all<7>(x, g, act, dwb, B, H, Wd, C, strides, threads); return 0;
    }
    return 1;
}

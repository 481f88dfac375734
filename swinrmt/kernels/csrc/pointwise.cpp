// SWAT's two elementwise neighbours of the mixer, one pass each way, on contiguous float32 CPU tensors:
//   silu_mul       z = v SiLU(g)                      (the SwiGLU value)
//                  dv = dz SiLU(g), dg = dz v SiLU'(g), SiLU'(g) = s (1 + g (1 - s)), s = sigmoid(g)
//   head_rms_norm  y = x r w, r = 1 / sqrt(mean(x^2) + eps) over each head's d channels   (the head norm)
//                  dx = r (u - x r^2 mean(u x)), u = dy w;  dw = sum over rows of dy x r
// PyTorch runs SiLU-times-v as two ops forward and four backward (with the SiLU recomputed), and the RMS norm as
// about six forward and ten backward: each a pass over an activation-sized tensor. Work splits into row ranges across
// OpenMP threads; the weight gradient sums per-thread partials.
//
// Built at first use with the other kernels into one library by swinrmt/layers/cpu_kernels.py, called via ctypes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <omp.h>

#include "vec.h"

namespace {

// 1 / (1 + exp(-x)); exactly 0 below x = -88, where exp would overflow, so that SiLU(-inf) = -inf * 0 is NaN and
// SiLU(-1e4) is -0, as in PyTorch (NaN stays NaN: every comparison is false for it)
inline vf vsigmoid(vf x) {
    const vf nx = -x;
    const vf s = 1.0f / (1.0f + vexp(nx > 88.0f ? splat(88.0f) : nx));
    return nx > 88.0f ? vf{} : s;
}

// f(i, count) for every vector of n elements, across threads; the last `count` may be short (n not a multiple of W).
template <class F>
void for_each_vector(int64_t n, int threads, F&& f) {
    const int64_t full = n / W * W;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < full; i += W) f(i, (int64_t)W);
    if (full < n) f(full, n - full);
}

// Loads and stores of `count` <= W floats (a short tail goes through a zero-padded buffer; count == W is the full,
// inlined case of the loop above).
inline vf load_n(const float* p, int64_t count) {
    if (count == W) return loadu(p);
    float b[W] = {};
    std::copy(p, p + count, b);
    return loadu(b);
}
inline void store_n(float* p, vf x, int64_t count) {
    if (count == W) return storeu(p, x);
    float b[W];
    storeu(b, x);
    std::copy(b, b + count, p);
}

}  // namespace

extern "C" int silu_mul_forward(const float* v, const float* g, float* z, int64_t n, int threads) {
    for_each_vector(n, threads, [&](int64_t i, int64_t count) {
        const vf gv = load_n(g + i, count);
        store_n(z + i, load_n(v + i, count) * gv * vsigmoid(gv), count);
    });
    return 0;
}

extern "C" int silu_mul_backward(const float* v, const float* g, const float* dz, float* dv, float* dg, int64_t n,
                                 int threads) {
    for_each_vector(n, threads, [&](int64_t i, int64_t count) {
        const vf gv = load_n(g + i, count), d = load_n(dz + i, count), s = vsigmoid(gv);
        store_n(dv + i, d * gv * s, count);
        store_n(dg + i, d * load_n(v + i, count) * s * (1.0f + gv * (1.0f - s)), count);
    });
    return 0;
}

// x, y: (rows, C) contiguous, C = heads * d, d a multiple of the vector width; rstd: (rows, heads).
extern "C" int head_rms_norm_forward(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t C,
                                     int64_t d, float eps, int threads) {
    if (d % W || C % d) return 1;
    const int64_t heads = C / d;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * C;
        float* yr = y + r * C;
        for (int64_t h = 0; h < heads; ++h) {
            const float* xh = xr + h * d;
            vf acc{};
            for (int64_t c = 0; c < d; c += W) {
                const vf xv = loadu(xh + c);
                acc += xv * xv;
            }
            const float inv = 1.0f / std::sqrt(hsum(acc) / (float)d + eps);
            rstd[r * heads + h] = inv;
            for (int64_t c = 0; c < d; c += W) storeu(yr + h * d + c, loadu(xh + c) * inv * loadu(w + h * d + c));
        }
    }
    return 0;
}

// dx: (rows, C); dw: (C,), the sum over rows (nullptr: not wanted).
extern "C" int head_rms_norm_backward(const float* x, const float* w, const float* rstd, const float* dy, float* dx,
                                      float* dw, int64_t rows, int64_t C, int64_t d, int threads) {
    if (d % W || C % d) return 1;
    const int64_t heads = C / d;
    std::vector<float> parts(dw ? (size_t)threads * C : 0, 0.0f);  // one partial weight gradient per thread
#pragma omp parallel num_threads(threads)
    {
        float* part = dw ? parts.data() + (size_t)omp_get_thread_num() * C : nullptr;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r) {
            const float *xr = x + r * C, *dyr = dy + r * C;
            float* dxr = dx + r * C;
            for (int64_t h = 0; h < heads; ++h) {
                const int64_t o = h * d;
                const float inv = rstd[r * heads + h];
                vf acc{};
                for (int64_t c = 0; c < d; c += W) acc += loadu(dyr + o + c) * loadu(w + o + c) * loadu(xr + o + c);
                const float coef = inv * inv * inv * hsum(acc) / (float)d;
                for (int64_t c = 0; c < d; c += W) {
                    const vf xv = loadu(xr + o + c), dyv = loadu(dyr + o + c);
                    storeu(dxr + o + c, inv * dyv * loadu(w + o + c) - xv * coef);
                    if (part) storeu(part + o + c, loadu(part + o + c) + dyv * xv * inv);
                }
            }
        }
    }
    if (dw)
        for (int64_t c = 0; c < C; ++c) {
            float sum = 0.0f;
            for (int t = 0; t < threads; ++t) sum += parts[(size_t)t * C + c];
            dw[c] = sum;
        }
    return 0;
}

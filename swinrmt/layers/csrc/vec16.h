// 16-float vectors (GCC/Clang vector extensions: AVX-512 where the CPU has it, narrower registers otherwise) and the
// vector exp shared by swinrmt's CPU kernels (short_attention.cpp, depthwise_conv.cpp). Each includes it once.
#pragma once
#include <cmath>
#include <cstdint>

namespace {

typedef float vf __attribute__((vector_size(64), aligned(64)));
typedef float vfu __attribute__((vector_size(64), aligned(4)));  // unaligned rows
typedef int32_t vi __attribute__((vector_size(64)));
constexpr int W = 16;

inline vf splat(float x) { return vf{} + x; }
inline vf loadu(const float* p) { return *(const vfu*)p; }
inline void storeu(float* p, vf x) { *(vfu*)p = x; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline vf sw8(vf x) { return __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7); }
inline vf sw4(vf x) { return __builtin_shufflevector(x, x, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11); }
inline vf sw2(vf x) { return __builtin_shufflevector(x, x, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13); }
inline vf sw1(vf x) { return __builtin_shufflevector(x, x, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14); }
inline float hmax(vf x) { x = vmax(x, sw8(x)); x = vmax(x, sw4(x)); x = vmax(x, sw2(x)); return vmax(x, sw1(x))[0]; }
inline float hsum(vf x) { x += sw8(x); x += sw4(x); x += sw2(x); x += sw1(x); return x[0]; }

// exp(x) for x <= ~88 as 2^n p(r), relative error < 3e-7; exactly 0 below -87, so masked keys (a large negative
// bias, or -inf for the padding of a short row) get exactly zero weight, as in PyTorch's kernels.
inline vf vexp(vf x0) {
    const vf lo = splat(-87.0f);
    const vf x = x0 < lo ? lo : x0;
    const vf n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
    const vf r = x - n * 0.693145751953125f - n * 1.42860682030941723212e-6f;
    vf p = splat(1.0f / 5040.0f);
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    const vf y = p * (vf)e;
    return x0 < lo ? vf{} : y;
}

}  // namespace

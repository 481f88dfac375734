// One SIMD register of floats (GCC/Clang vector extensions) and the vector exp shared by swinrmt's CPU kernels
// (short_attention.cpp, depthwise_conv.cpp, pointwise.cpp). Each includes it once.
//
// The width follows the target: 16 floats (one AVX-512 register) where the compiler targets AVX-512, else 8 (one
// AVX2 register). Written for 16 everywhere, the kernels ran 1.05-1.37x slower than PyTorch's ops on an AVX2 EPYC: each
// vector took two registers, so the register blocks sized for AVX-512's 32 spilled on AVX2's 16.
#pragma once
#include <cmath>
#include <cstdint>

namespace {

#if defined(__AVX512F__)
constexpr int W = 16;
#else
constexpr int W = 8;
#endif
typedef float vf __attribute__((vector_size(4 * W), aligned(4 * W)));
typedef float vfu __attribute__((vector_size(4 * W), aligned(4)));  // unaligned rows
typedef int32_t vi __attribute__((vector_size(4 * W)));

inline vf splat(float x) { return vf{} + x; }
inline vf loadu(const float* p) { return *(const vfu*)p; }
inline void storeu(float* p, vf x) { *(vfu*)p = x; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
#if defined(__AVX512F__)
inline vf sw8(vf x) { return __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7); }
inline vf sw4(vf x) { return __builtin_shufflevector(x, x, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11); }
inline vf sw2(vf x) { return __builtin_shufflevector(x, x, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13); }
// swaps the floats of each pair (rotary codes pair adjacent channels)
inline vf sw1(vf x) { return __builtin_shufflevector(x, x, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14); }
inline float hmax(vf x) { x = vmax(x, sw8(x)); x = vmax(x, sw4(x)); x = vmax(x, sw2(x)); return vmax(x, sw1(x))[0]; }
inline float hsum(vf x) { x += sw8(x); x += sw4(x); x += sw2(x); x += sw1(x); return x[0]; }
#else
inline vf sw4(vf x) { return __builtin_shufflevector(x, x, 4, 5, 6, 7, 0, 1, 2, 3); }
inline vf sw2(vf x) { return __builtin_shufflevector(x, x, 2, 3, 0, 1, 6, 7, 4, 5); }
inline vf sw1(vf x) { return __builtin_shufflevector(x, x, 1, 0, 3, 2, 5, 4, 7, 6); }
inline float hmax(vf x) { x = vmax(x, sw4(x)); x = vmax(x, sw2(x)); return vmax(x, sw1(x))[0]; }
inline float hsum(vf x) { x += sw4(x); x += sw2(x); x += sw1(x); return x[0]; }
#endif

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

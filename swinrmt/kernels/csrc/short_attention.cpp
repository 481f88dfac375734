// Softmax attention with an additive bias over short sequences (4-64 positions, head dim 16/32/64), float32, CPU.
//
// Why by hand: RMT-style decomposed attention runs thousands of independent problems per call (one per image row or
// column and head) of 32 x 32 x 16. PyTorch's fused CPU kernel (flash attention) pays per-block GEMM calls and
// copies sized for long sequences and reaches ~30 GFLOP/s there; the explicit bmm form writes the score tensor out
// and back. Here one problem lives in registers and L1: S = scale Q K^T + bias, P = softmax(S), O = P V, with the
// row log-sum-exp kept for the backward (FlashAttention-2 style recompute, no P saved). Problems are split across
// OpenMP threads. Inputs are read through strides (the token layout of the projections), outputs written the same way.
//
// Built at first use by swinrmt/layers/short_attention.py (c++ -O3 -march=native -fopenmp), called through ctypes.
// Vector code uses GCC/Clang vector extensions, W floats a vector (vec.h: 16 on AVX-512, 8 on AVX2); the register
// blocks (QB, PB, KB below) are sized for each width's register file.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "vec.h"

namespace {

// A bias row as LV vectors; positions past L (the register padding) get -inf.
template <int L, int LV>
inline vf bias_vec(const float* row, int jv) {
    if ((jv + 1) * W <= L) return loadu(row + jv * W);
    vf b = splat(-INFINITY);
    for (int t = 0; t < L - jv * W; ++t) b[t] = row[jv * W + t];
    return b;
}

// A multiplier row as LV vectors, 0 past L.
template <int L, int LV>
inline vf mul_vec(const float* row, int jv) {
    if ((jv + 1) * W <= L) return loadu(row + jv * W);
    vf m = vf{};
    for (int t = 0; t < L - jv * W; ++t) m[t] = row[jv * W + t];
    return m;
}

// 1 / (1 + exp(-x)) for any x (exp's argument clamped to 80: sigmoid < 2e-35 there).
inline vf vsigmoid(vf x) {
    vf nx = -x;
    const vf hi = splat(80.0f);
    nx = nx > hi ? hi : nx;
    return 1.0f / (1.0f + vexp(nx));
}

#if defined(__AVX512F__)
// In-lane and cross-lane shuffles of a 16 x 16 transpose (32-bit, then 64-bit interleaves within 128-bit lanes,
// then lane moves): 64 shuffles instead of 256 scalar loads and stores.
inline vf unpack_lo(vf a, vf b) {
    return __builtin_shufflevector(a, b, 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29);
}
inline vf unpack_hi(vf a, vf b) {
    return __builtin_shufflevector(a, b, 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
}
inline vf unpack_lo2(vf a, vf b) {
    return __builtin_shufflevector(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
}
inline vf unpack_hi2(vf a, vf b) {
    return __builtin_shufflevector(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
}
inline vf lanes_lo(vf a, vf b) {
    return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
}
inline vf lanes_hi(vf a, vf b) {
    return __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
}
inline vf lanes_even(vf a, vf b) {
    return __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
}
inline vf lanes_odd(vf a, vf b) {
    return __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
}

// out[c][j] = m[j * ms + c] for a W x W block.
inline void transpose_block(const float* m, int64_t ms, float* out, int64_t os) {
    vf t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        const vf a = loadu(m + i * ms), b = loadu(m + (i + 1) * ms);
        t[i] = unpack_lo(a, b);
        t[i + 1] = unpack_hi(a, b);
    }
    for (int g = 0; g < 16; g += 4) {  // u[g + k], lane l: column 4 l + k of rows g .. g + 3
        u[g] = unpack_lo2(t[g], t[g + 2]);
        u[g + 1] = unpack_hi2(t[g], t[g + 2]);
        u[g + 2] = unpack_lo2(t[g + 1], t[g + 3]);
        u[g + 3] = unpack_hi2(t[g + 1], t[g + 3]);
    }
    for (int k = 0; k < 4; ++k) {
        const vf alo = lanes_lo(u[k], u[4 + k]), ahi = lanes_hi(u[k], u[4 + k]);
        const vf blo = lanes_lo(u[8 + k], u[12 + k]), bhi = lanes_hi(u[8 + k], u[12 + k]);
        storeu(out + k * os, lanes_even(alo, blo));
        storeu(out + (4 + k) * os, lanes_odd(alo, blo));
        storeu(out + (8 + k) * os, lanes_even(ahi, bhi));
        storeu(out + (12 + k) * os, lanes_odd(ahi, bhi));
    }
}
#else
// The 8 x 8 transpose (32-bit, then 64-bit interleaves within 128-bit lanes, then lane moves): 24 shuffles.
inline vf unpack_lo(vf a, vf b) { return __builtin_shufflevector(a, b, 0, 8, 1, 9, 4, 12, 5, 13); }
inline vf unpack_hi(vf a, vf b) { return __builtin_shufflevector(a, b, 2, 10, 3, 11, 6, 14, 7, 15); }
inline vf unpack_lo2(vf a, vf b) { return __builtin_shufflevector(a, b, 0, 1, 8, 9, 4, 5, 12, 13); }
inline vf unpack_hi2(vf a, vf b) { return __builtin_shufflevector(a, b, 2, 3, 10, 11, 6, 7, 14, 15); }
inline vf lanes_lo(vf a, vf b) { return __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11); }
inline vf lanes_hi(vf a, vf b) { return __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15); }

// out[c][j] = m[j * ms + c] for a W x W block.
inline void transpose_block(const float* m, int64_t ms, float* out, int64_t os) {
    vf t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        const vf a = loadu(m + i * ms), b = loadu(m + (i + 1) * ms);
        t[i] = unpack_lo(a, b);  // lane l: columns 0, 1, 4, 5 of rows i, i + 1, interleaved
        t[i + 1] = unpack_hi(a, b);
    }
    for (int g = 0; g < 8; g += 4) {  // u[g + k]: column k (lanes 0-3) and k + 4 (lanes 4-7) of rows g .. g + 3
        u[g] = unpack_lo2(t[g], t[g + 2]);
        u[g + 1] = unpack_hi2(t[g], t[g + 2]);
        u[g + 2] = unpack_lo2(t[g + 1], t[g + 3]);
        u[g + 3] = unpack_hi2(t[g + 1], t[g + 3]);
    }
    for (int k = 0; k < 4; ++k) {
        storeu(out + k * os, lanes_lo(u[k], u[4 + k]));
        storeu(out + (4 + k) * os, lanes_hi(u[k], u[4 + k]));
    }
}
#endif

// Register blocks: QB query rows of LV score vectors (qb_for: the forward; qb_bwd_for: the backward, two sets),
// PB output rows of DV vectors. AVX-512 has 32 vector registers, AVX2 16.
#if defined(__AVX512F__)
constexpr int qb_for(int lv) { return lv == 1 ? 8 : 4; }
constexpr int qb_bwd_for(int lv) { return qb_for(lv); }
#else
constexpr int qb_for(int lv) { return lv == 1 ? 8 : (lv == 2 ? 4 : (lv == 4 ? 2 : 1)); }
constexpr int qb_bwd_for(int lv) { return lv == 1 ? 4 : (lv == 2 ? 2 : 1); }
#endif
constexpr int pb_for(int dv) { return dv >= 8 ? 1 : 8 / dv; }

// M^T of the L x D rows at stride ms, zero-padded to LP columns: the B operand of S = Q K^T (and of dO V^T).
template <int D, int L, int LP>
inline void transpose_rows(const float* m, int64_t ms, float (*mt)[LP]) {
    if constexpr (L % W == 0) {
        for (int j = 0; j < L; j += W)
            for (int c = 0; c < D; c += W) transpose_block(m + j * ms + c, ms, &mt[c][j], LP);
        return;
    }
    for (int j = 0; j < L; ++j)
        for (int c = 0; c < D; ++c) mt[c][j] = m[j * ms + c];
    for (int c = 0; c < D; ++c)
        for (int j = L; j < LP; ++j) mt[c][j] = 0.f;
}

// Rows of q or k rotated by the rotary code as they are loaded (x cos + swap_pairs(x) sin, sin signed -,+ per pair),
// so the model need not write rotated copies of q and k (swinrmt.layers.rotary.FoldedRotary).
// cs / sn: the tables' first row; rs: their step (floats) from one row of the problem to the next.
template <int D, int L>
inline void rotate_rows(const float* m, int64_t ms, const float* cs, const float* sn, int64_t rs, float (*out)[D]) {
    for (int l = 0; l < L; ++l)
        for (int c = 0; c < D; c += W) {
            const vf x = loadu(m + l * ms + c);
            *(vf*)&out[l][c] = x * loadu(cs + l * rs + c) + sw1(x) * loadu(sn + l * rs + c);
        }
}

struct Strides {  // element strides of a (n1, n2, L, D) operand; the last one is 1
    int64_t a, b, row;
};

// SIG = false: softmax(S) with S = scale Q K^T + bias. SIG = true: SWAT's sigmoid(S) * mul (no normaliser; a key
// whose multiplier is 0 gets weight exactly 0).
template <int D, int L, bool SIG>
void forward_one(const float* q, int64_t qs, const float* k, int64_t ks, const float* v, int64_t vs,
                 const float* bias, int64_t bs, const float* mul, int64_t ms, float* out, int64_t os, float* lse,
                 float scale, const float* rc = nullptr, const float* rsn = nullptr, int64_t rs = 0) {
    constexpr int LV = (L + W - 1) / W, LP = LV * W, DV = D / W;
    // rows per block (powers of two, so they divide L): QB * LV score and PB * DV output accumulators in registers
    constexpr int QB = std::min(qb_for(LV), L), PB = std::min(pb_for(DV), L);
    alignas(64) float kt[D][LP];
    alignas(64) float p[L][LP];
    alignas(64) float inv[L];
    if (rc) {  // rotary: rotated copies of q and k rows in L1
        alignas(64) float rk[L][D];
        rotate_rows<D, L>(k, ks, rc, rsn, rs, rk);
        transpose_rows<D, L, LP>(&rk[0][0], D, kt);
    } else {
        transpose_rows<D, L, LP>(k, ks, kt);
    }
    alignas(64) float rq[L][D];  // uninitialised unless rotary
    if (rc) {
        rotate_rows<D, L>(q, qs, rc, rsn, rs, rq);
        q = &rq[0][0];
        qs = D;
    }
    for (int i0 = 0; i0 < L; i0 += QB) {
        vf s[QB][LV];
        for (int ii = 0; ii < QB; ++ii)
            for (int jv = 0; jv < LV; ++jv) s[ii][jv] = vf{};
        for (int c = 0; c < D; ++c) {
            vf kc[LV];
            for (int jv = 0; jv < LV; ++jv) kc[jv] = *(const vf*)&kt[c][jv * W];
            for (int ii = 0; ii < QB; ++ii) {
                const float qv = q[(i0 + ii) * qs + c];
                for (int jv = 0; jv < LV; ++jv) s[ii][jv] += qv * kc[jv];
            }
        }
        for (int ii = 0; ii < QB; ++ii) {
            const int i = i0 + ii;
            for (int jv = 0; jv < LV; ++jv) s[ii][jv] *= scale;  // once per score, not per q element
            if constexpr (SIG) {
                for (int jv = 0; jv < LV; ++jv) {
                    const vf x = s[ii][jv] + mul_vec<L, LV>(bias + i * bs, jv);  // bias row, 0-padded
                    *(vf*)&p[i][jv * W] = vsigmoid(x) * mul_vec<L, LV>(mul + i * ms, jv);
                }
                inv[i] = 1.0f;
                continue;
            }
            if constexpr (L % W == 0) {  // scores now, the softmax below on W-row groups
                for (int jv = 0; jv < LV; ++jv) *(vf*)&p[i][jv * W] = s[ii][jv] + loadu(bias + i * bs + jv * W);
                continue;
            }
            vf m = splat(-INFINITY);
            for (int jv = 0; jv < LV; ++jv) {
                s[ii][jv] += bias_vec<L, LV>(bias + i * bs, jv);
                m = vmax(m, s[ii][jv]);
            }
            const float mx = hmax(m);
            vf sum = vf{};
            for (int jv = 0; jv < LV; ++jv) {
                const vf e = vexp(s[ii][jv] - mx);
                *(vf*)&p[i][jv * W] = e;
                sum += e;
            }
            const float total = hsum(sum);
            inv[i] = 1.0f / total;
            if (lse) lse[i] = mx + std::log(total);
        }
    }
    // Softmax of W rows at a time, transposed: pt[j] holds score j of the W rows, so the row max and sum are
    // elementwise over j (no horizontal reductions); P stays transposed for the product with V.
    constexpr bool GROUPED = !SIG && L % W == 0;
    alignas(64) float pt[GROUPED ? L / W : 1][GROUPED ? L : 1][W];
    if constexpr (GROUPED) {
        for (int g = 0; g < L / W; ++g) {
            for (int j = 0; j < L; j += W) transpose_block(&p[g * W][j], LP, &pt[g][j][0], W);
            vf m = *(const vf*)&pt[g][0][0];
            for (int j = 1; j < L; ++j) m = vmax(m, *(const vf*)&pt[g][j][0]);
            vf sum = vf{};
            for (int j = 0; j < L; ++j) {
                const vf e = vexp(*(const vf*)&pt[g][j][0] - m);
                *(vf*)&pt[g][j][0] = e;
                sum += e;
            }
            *(vf*)&inv[g * W] = 1.0f / sum;
            if (lse)
                for (int t = 0; t < W; ++t) lse[g * W + t] = m[t] + std::log(sum[t]);
        }
    }
    for (int i0 = 0; i0 < L; i0 += PB) {
        vf acc[PB][DV];
        for (int ii = 0; ii < PB; ++ii)
            for (int c = 0; c < DV; ++c) acc[ii][c] = vf{};
        for (int j = 0; j < L; ++j) {
            vf vr[DV];
            for (int c = 0; c < DV; ++c) vr[c] = loadu(v + j * vs + c * W);
            for (int ii = 0; ii < PB; ++ii) {
                const float pj = GROUPED ? pt[(i0 + ii) / W][j][(i0 + ii) % W] : p[i0 + ii][j];
                for (int c = 0; c < DV; ++c) acc[ii][c] += pj * vr[c];
            }
        }
        for (int ii = 0; ii < PB; ++ii)
            for (int c = 0; c < DV; ++c) storeu(out + (i0 + ii) * os + c * W, acc[ii][c] * inv[i0 + ii]);
    }
}

// P = exp(S - lse) recomputed; dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO * O)), dQ = scale dS K,
// dK = scale dS^T Q.
// Sigmoid (SIG): A = sig * mul recomputed, dS = (dO V^T) * mul * sig * (1 - sig); then as for softmax.
template <int D, int L, bool SIG>
void backward_one(const float* q, int64_t qs, const float* k, int64_t ks, const float* v, int64_t vs,
                  const float* bias, int64_t bs, const float* mul, int64_t ms, const float* o, int64_t os,
                  const float* go, int64_t gos, const float* lse, float* dq, int64_t dqs, float* dk, int64_t dks,
                  float* dv, int64_t dvs, float scale) {
    constexpr int LV = (L + W - 1) / W, LP = LV * W, DV = D / W;
    constexpr int QB = std::min(qb_bwd_for(LV), L), PB = std::min(pb_for(DV), L);
    constexpr int KB = PB > 1 ? PB / 2 : 1;  // key rows per dK/dV block: 2 * KB * DV accumulators
    alignas(64) float kt[D][LP];
    alignas(64) float vt[D][LP];
    alignas(64) float p[L][LP];
    alignas(64) float ds[L][LP];
    transpose_rows<D, L, LP>(k, ks, kt);
    transpose_rows<D, L, LP>(v, vs, vt);
    for (int i0 = 0; i0 < L; i0 += QB) {
        vf s[QB][LV], g[QB][LV];
        for (int ii = 0; ii < QB; ++ii)
            for (int jv = 0; jv < LV; ++jv) s[ii][jv] = g[ii][jv] = vf{};
        for (int c = 0; c < D; ++c) {
            vf kc[LV], vc[LV];
            for (int jv = 0; jv < LV; ++jv) {
                kc[jv] = *(const vf*)&kt[c][jv * W];
                vc[jv] = *(const vf*)&vt[c][jv * W];
            }
            for (int ii = 0; ii < QB; ++ii) {
                const float qv = q[(i0 + ii) * qs + c], gv = go[(i0 + ii) * gos + c];
                for (int jv = 0; jv < LV; ++jv) {
                    s[ii][jv] += qv * kc[jv];
                    g[ii][jv] += gv * vc[jv];
                }
            }
        }
        for (int ii = 0; ii < QB; ++ii) {
            const int i = i0 + ii;
            for (int jv = 0; jv < LV; ++jv) s[ii][jv] *= scale;
            if constexpr (SIG) {
                for (int jv = 0; jv < LV; ++jv) {
                    const vf sg = vsigmoid(s[ii][jv] + mul_vec<L, LV>(bias + i * bs, jv));
                    const vf m = mul_vec<L, LV>(mul + i * ms, jv);
                    *(vf*)&p[i][jv * W] = sg * m;
                    *(vf*)&ds[i][jv * W] = g[ii][jv] * m * sg * (1.0f - sg);
                }
                continue;
            }
            vf dot = vf{};
            for (int c = 0; c < DV; ++c) dot += loadu(go + i * gos + c * W) * loadu(o + i * os + c * W);
            const float di = hsum(dot), li = lse[i];
            for (int jv = 0; jv < LV; ++jv) {
                const vf e = vexp(s[ii][jv] + bias_vec<L, LV>(bias + i * bs, jv) - li);
                *(vf*)&p[i][jv * W] = e;
                *(vf*)&ds[i][jv * W] = e * (g[ii][jv] - di);
            }
        }
    }
    for (int i0 = 0; i0 < L; i0 += PB) {
        vf acc[PB][DV];
        for (int ii = 0; ii < PB; ++ii)
            for (int c = 0; c < DV; ++c) acc[ii][c] = vf{};
        for (int j = 0; j < L; ++j) {
            vf kr[DV];
            for (int c = 0; c < DV; ++c) kr[c] = loadu(k + j * ks + c * W);
            for (int ii = 0; ii < PB; ++ii) {
                const float x = ds[i0 + ii][j];
                for (int c = 0; c < DV; ++c) acc[ii][c] += x * kr[c];
            }
        }
        for (int ii = 0; ii < PB; ++ii)
            for (int c = 0; c < DV; ++c) storeu(dq + (i0 + ii) * dqs + c * W, acc[ii][c] * scale);
    }
    for (int j0 = 0; j0 < L; j0 += KB) {
        vf ak[KB][DV], av[KB][DV];
        for (int jj = 0; jj < KB; ++jj)
            for (int c = 0; c < DV; ++c) ak[jj][c] = av[jj][c] = vf{};
        for (int i = 0; i < L; ++i) {
            vf qr[DV], gr[DV];
            for (int c = 0; c < DV; ++c) {
                qr[c] = loadu(q + i * qs + c * W);
                gr[c] = loadu(go + i * gos + c * W);
            }
            for (int jj = 0; jj < KB; ++jj) {
                const float x = ds[i][j0 + jj], y = p[i][j0 + jj];
                for (int c = 0; c < DV; ++c) {
                    ak[jj][c] += x * qr[c];
                    av[jj][c] += y * gr[c];
                }
            }
        }
        for (int jj = 0; jj < KB; ++jj)
            for (int c = 0; c < DV; ++c) {
                storeu(dk + (j0 + jj) * dks + c * W, ak[jj][c] * scale);
                storeu(dv + (j0 + jj) * dvs + c * W, av[jj][c]);
            }
    }
}

// How many problems ahead the drivers prefetch a problem's q, k, v rows (into L2), from 16 positions on. The
// projections' token layout gives each problem L rows of D floats at a large stride; where consecutive problems
// move to new memory (the width pass: the next image row every `heads` problems), the hardware prefetcher does not
// follow, and the kernel waited on DRAM: on rmt_tiny's cold full-batch calls it ran the stage-1 width pass at
// 35-47 GFLOP/s against 65-84 on the same problems stored contiguously. Prefetching 2-4 problems ahead measured
// 1.2-1.4x faster on the width passes and stage 2's height pass, about even elsewhere (benchmarks/speed/README.md).
int prefetch_ahead = 4;  // 0: off (short_attention_set_prefetch; benchmarks/speed/ab_switch.py kernel_prefetch)

template <int D, int L>
inline void prefetch_rows(const float* m, int64_t ms) {
    for (int l = 0; l < L; ++l)
        for (int c = 0; c < D; c += W) __builtin_prefetch(m + l * ms + c, 0, 2);
}

template <int D, int L, bool SIG>
void forward_all(const float* q, const float* k, const float* v, const float* bias, const float* mul, float* out,
                 float* lse, int64_t n1, int64_t n2, const int64_t* st, const int64_t* mst, const float* rcos,
                 const float* rsin, int64_t rstep, float scale, int threads) {
    const Strides Q{st[0], st[1], st[2]}, K{st[3], st[4], st[5]}, V{st[6], st[7], st[8]}, B{st[9], st[10], st[11]},
        O{st[12], st[13], st[14]}, M{mst[0], mst[1], mst[2]};
    const int64_t n = n1 * n2, ahead = prefetch_ahead;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t t = 0; t < n; ++t) {
        const int64_t a = t / n2, b = t % n2;
        if (L >= 16 && ahead && t + ahead < n) {
            const int64_t a1 = (t + ahead) / n2, b1 = (t + ahead) % n2;
            prefetch_rows<D, L>(q + a1 * Q.a + b1 * Q.b, Q.row);
            prefetch_rows<D, L>(k + a1 * K.a + b1 * K.b, K.row);
            prefetch_rows<D, L>(v + a1 * V.a + b1 * V.b, V.row);
        }
        forward_one<D, L, SIG>(q + a * Q.a + b * Q.b, Q.row, k + a * K.a + b * K.b, K.row, v + a * V.a + b * V.b,
                               V.row, bias + a * B.a + b * B.b, B.row, SIG ? mul + a * M.a + b * M.b : nullptr, M.row,
                               out + a * O.a + b * O.b, O.row, lse ? lse + t * L : nullptr, scale, rcos, rsin,
                               rstep * D);
    }
}

template <int D, int L, bool SIG>
void backward_all(const float* q, const float* k, const float* v, const float* bias, const float* mul, const float* o,
                  const float* go, const float* lse, float* dq, float* dk, float* dv, int64_t n1, int64_t n2,
                  const int64_t* st, const int64_t* mst, float scale, int threads) {
    const Strides Q{st[0], st[1], st[2]}, K{st[3], st[4], st[5]}, V{st[6], st[7], st[8]}, B{st[9], st[10], st[11]},
        O{st[12], st[13], st[14]}, G{st[15], st[16], st[17]}, DQ{st[18], st[19], st[20]}, DK{st[21], st[22], st[23]},
        DVs{st[24], st[25], st[26]}, M{mst[0], mst[1], mst[2]};
    const int64_t n = n1 * n2, ahead = prefetch_ahead;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t t = 0; t < n; ++t) {
        const int64_t a = t / n2, b = t % n2;
        if (L >= 16 && ahead && t + ahead < n) {
            const int64_t a1 = (t + ahead) / n2, b1 = (t + ahead) % n2;
            prefetch_rows<D, L>(q + a1 * Q.a + b1 * Q.b, Q.row);
            prefetch_rows<D, L>(k + a1 * K.a + b1 * K.b, K.row);
            prefetch_rows<D, L>(v + a1 * V.a + b1 * V.b, V.row);
            prefetch_rows<D, L>(go + a1 * G.a + b1 * G.b, G.row);
            if (!SIG) prefetch_rows<D, L>(o + a1 * O.a + b1 * O.b, O.row);
        }
        backward_one<D, L, SIG>(q + a * Q.a + b * Q.b, Q.row, k + a * K.a + b * K.b, K.row, v + a * V.a + b * V.b,
                                V.row, bias + a * B.a + b * B.b, B.row, SIG ? mul + a * M.a + b * M.b : nullptr, M.row,
                                SIG ? nullptr : o + a * O.a + b * O.b, O.row, go + a * G.a + b * G.b, G.row,
                                SIG ? nullptr : lse + t * L, dq + a * DQ.a + b * DQ.b, DQ.row, dk + a * DK.a + b * DK.b, DK.row,
                           dv + a * DVs.a + b * DVs.b, DVs.row, scale);
    }
}

}  // namespace

#define SHAPES(X) X(16, 4) X(16, 8) X(16, 16) X(16, 32) X(16, 64) \
                  X(32, 4) X(32, 8) X(32, 16) X(32, 32) X(32, 64) \
                  X(64, 4) X(64, 8) X(64, 16) X(64, 32) X(64, 64)

extern "C" {

// mul == nullptr: softmax attention; otherwise SWAT's sigmoid attention with that multiplier table (lse unused).
// strides: 5 operands (q, k, v, bias, out) x 3 (n1, n2, row), mul_strides: 3; a broadcast dimension has stride 0.
// rot_cos / rot_sin non-null: contiguous (positions, D) rotary tables (sin signed -,+ per channel pair); q and k rows
// are rotated as loaded, row l of every problem by table row l * rot_step (swinrmt.layers.rotary.FoldedRotary).
// Returns 0, or 1 for an unsupported (head dim, length).
int short_attention_forward(const float* q, const float* k, const float* v, const float* bias, const float* mul,
                            float* out, float* lse, int64_t n1, int64_t n2, int64_t L, int64_t D,
                            const int64_t* strides, const int64_t* mul_strides, const float* rot_cos,
                            const float* rot_sin, int64_t rot_step, float scale, int threads) {
#define FWD(DD, LL)                                                                                                  \
    if (D == DD && L == LL) {                                                                                        \
        if (mul) forward_all<DD, LL, true>(q, k, v, bias, mul, out, nullptr, n1, n2, strides, mul_strides, rot_cos,    \
                                           rot_sin, rot_step, scale, threads);                                       \
        else forward_all<DD, LL, false>(q, k, v, bias, nullptr, out, lse, n1, n2, strides, mul_strides, rot_cos,     \
                                        rot_sin, rot_step, scale, threads);                                          \
        return 0;                                                                                                    \
    }
    SHAPES(FWD)
    return 1;
}

// Sets how many problems ahead both drivers prefetch (0: no prefetch), for before/after measurements; returns the
// previous setting.
int short_attention_set_prefetch(int ahead) {
    const int prev = prefetch_ahead;
    prefetch_ahead = ahead < 0 ? 0 : ahead;
    return prev;
}

// strides: 9 operands (q, k, v, bias, out, grad_out, grad_q, grad_k, grad_v) x 3; out and lse unused with mul.
int short_attention_backward(const float* q, const float* k, const float* v, const float* bias, const float* mul,
                             const float* o, const float* go, const float* lse, float* dq, float* dk, float* dv,
                             int64_t n1, int64_t n2, int64_t L, int64_t D, const int64_t* strides,
                             const int64_t* mul_strides, float scale, int threads) {
#define BWD(DD, LL)                                                                                                  \
    if (D == DD && L == LL) {                                                                                        \
        if (mul) backward_all<DD, LL, true>(q, k, v, bias, mul, o, go, lse, dq, dk, dv, n1, n2, strides, mul_strides,  \
                                            scale, threads);                                                         \
        else backward_all<DD, LL, false>(q, k, v, bias, nullptr, o, go, lse, dq, dk, dv, n1, n2, strides,             \
                                         mul_strides, scale, threads);                                               \
        return 0;                                                                                                    \
    }
    SHAPES(BWD)
    return 1;
}

}  // extern "C"

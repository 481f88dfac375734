#!/usr/bin/env bash
# The commands behind benchmarks/speed/README.md (CPU, 2 threads). Run from the repository root:
# (Since the kernel boundary, revision after 862583f: switches are `swinrmt.kernels.Policy` fields, the one-off scripts
#  and the console logs named below are in git history at 862583f, and the settings are SWINRMT_KERNELS / _CACHE.)
#   benchmarks/speed/run_cpu.sh > benchmarks/speed/run_cpu.log 2>&1
# Sections 1-3 and 8-11 are the seventh session's run (2026-11-25): run_cpu.log. The sixth, fifth and fourth
# sessions' runs of the same sections are run_cpu_session6.log, run_cpu_session5.log and run_cpu_session4.log.
# Sections 6-7 are the third session's (run_cpu_session3.log), 4-5 the second session's, kept as recorded, not rerun.
# The *_session1/3/4/5/6.json files are sections 1-3 (and 11) as the first / third to sixth sessions ran them.
set -e
M="rmt_tiny gated_swinrmt_retention_tiny gated_swinrmt_swat_tiny"
# Sections 1-3 and an fp32 rerun of section 1 at one commit, into files named by the session (sections 13 and 14)
session_tables() {
  local b="benchmarks/speed/cpu_tiny_64px_b64"
  python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 bf16 \
    --steps 8 --warmup 2 --out ${b}_$1.json
  python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 \
    --steps 8 --warmup 2 --out ${b}_rerun_$1.json
  python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 --stem-stride 4 \
    --steps 8 --warmup 2 --out ${b}_stem4_$1.json
  python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 --reference-path \
    --steps 6 --warmup 2 --no-memory --out ${b}_reference_path_$1.json
}
uptime
# 1. the target table: tiny models, batch 64 at 64 px, train + infer, fp32 + bf16 autocast, with training memory
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 bf16 \
  --steps 8 --warmup 2 --overwrite --out benchmarks/speed/cpu_tiny_64px_b64.json
uptime
# 2. the public RMT-T layout (stride-4 stem, 0.39 GFLOP/img), to compare images/s with the public code
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 --stem-stride 4 \
  --steps 8 --warmup 2 --overwrite --out benchmarks/speed/cpu_tiny_64px_b64_stem4.json
uptime
# 3. the same fp32 steps on the mixers' plain reference path (the fast path's before/after at the whole-model level)
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 --reference-path \
  --steps 6 --warmup 2 --no-memory --overwrite --out benchmarks/speed/cpu_tiny_64px_b64_reference_path.json
uptime
# 4. (second session) nano models at 64 px, fp32 vs bf16 autocast, with swin_nano beside them. The file
#    *_before_bf16_fix.json is the same command (without swin_nano) at commit f7523f0, before CPU bf16 attention stopped
#    using the fused masked SDPA kernel. Not rerun in the third session.
# python -m swinrmt bench --models rmt_nano gated_swinrmt_retention_nano gated_swinrmt_swat_nano swin_nano --img-size 64 \
#   --batch 64 --mode train --precision fp32 bf16 --steps 4 --warmup 1 --no-memory --num-classes 100 \
#   --overwrite --out benchmarks/speed/cpu_nano_64px_b64_train.json
# 5. (second session) training memory of the lean SWAT path; superseded by the memory column of section 1.
# python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train --precision fp32 bf16 --steps 1 --warmup 1 \
#   --mem-steps 2 --overwrite --out benchmarks/speed/cpu_tiny_64px_b64_memory.json
# 6. (third session, not rerun) the CPU allocator, before/after: rmt_tiny under glibc's default malloc and under swinrmt.runtime's setting,
#    alternated in fresh processes (a process-wide setting cannot be interleaved step by step inside one run)
# benchmarks/speed/allocator_ab.sh 4
# uptime
# 6b. the same before/after in plain processes (what the trainer runs; see allocator_ab.py for why it differs)
# python benchmarks/speed/allocator_ab.py --rounds 3 --steps 6
# uptime
# 7. (third session, not rerun) torch.compile (Inductor, CPU) inference beside eager: compile time is excluded (warm-up steps)
# python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode infer --precision fp32 --compile \
#   --steps 5 --warmup 2 --no-memory --overwrite --out benchmarks/speed/cpu_tiny_64px_b64_compile.json
# uptime
# 8. each speed change of the fourth to seventh sessions on/off, interleaved in one process (whole-model ratios); the
#    third session's switches (complex_rotary, scale_fold, windowed_inference) are in run_cpu_session4.log
echo "| switch | model | mode | off ms | on ms | on / off |"
echo "|---|---|---|---:|---:|---:|"
python benchmarks/speed/ab_switch.py onednn_linear --model rmt_tiny --steps 8
python benchmarks/speed/ab_switch.py conv1x1_grads --model rmt_tiny --mode train --steps 8
python benchmarks/speed/ab_switch.py conv1x1_grads --model rmt_tiny --mode train --steps 8 --stem-stride 4
python benchmarks/speed/ab_switch.py dw_weight_grad --model rmt_tiny --mode train --steps 8
python benchmarks/speed/ab_switch.py dw_weight_grad --model rmt_tiny --mode train --steps 8 --stem-stride 4
python benchmarks/speed/ab_switch.py fuse_inference --model rmt_tiny --mode infer --steps 10
python benchmarks/speed/ab_switch.py fuse_inference --model rmt_tiny --mode infer --steps 10 --stem-stride 4
python benchmarks/speed/ab_switch.py fused_optimizer --model rmt_tiny --mode train --steps 10
python benchmarks/speed/ab_switch.py fused_optimizer --model rmt_tiny --mode train --steps 10 --stem-stride 4
python benchmarks/speed/ab_switch.py sigmoid_groups --model gated_swinrmt_swat_tiny --steps 10
python benchmarks/speed/ab_switch.py sigmoid_groups --model gated_swinrmt_swat_tiny --steps 10 --stem-stride 4
python benchmarks/speed/ab_switch.py short_attention --model rmt_tiny --steps 10
python benchmarks/speed/ab_switch.py short_attention --model rmt_tiny --steps 10 --stem-stride 4
python benchmarks/speed/ab_switch.py short_attention --model gated_swinrmt_retention_tiny --steps 10
python benchmarks/speed/ab_switch.py short_attention --model gated_swinrmt_swat_tiny --steps 10
uptime
# 9. where an inference step spends its time, per module type, timed without the profiler; the depthwise convs'
#    gradients (aten's against DWConv's)
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/module_times.py --model rmt_tiny
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/module_times.py --model rmt_tiny --stem-stride 4
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/dwconv_backward.py --model rmt_tiny
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/dwconv_backward.py --model rmt_tiny --stem-stride 4
uptime
# 10. the kernels behind the fourth to seventh sessions' changes, on the models' own shapes (each call alone): oneDNN
#     projections and their 1x1-convolution gradients (kept), the explicit attention form in training (dropped: memory)
#     and the short-attention kernel (kept),
#     the optimizer step's three implementations (fused kept), SWAT's mixers with merged windows (kept at head dim 16)
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/gemm_kernels.py --model rmt_tiny
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/gemm_kernels.py --model rmt_tiny --stem-stride 4
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/attention_kernels.py --model rmt_tiny
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/attention_kernels.py --model rmt_tiny --stem-stride 4
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/optimizer_step.py --model rmt_tiny
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/sigmoid_groups.py --model gated_swinrmt_swat_tiny
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/sigmoid_groups.py --model gated_swinrmt_swat_tiny --stem-stride 4
uptime
# 11. (since the fifth session) sections 1-2 once more, straight after: the spread between two runs on this shared machine
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 \
  --steps 8 --warmup 2 --overwrite --out benchmarks/speed/cpu_tiny_64px_b64_rerun.json
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 --stem-stride 4 \
  --steps 8 --warmup 2 --overwrite --out benchmarks/speed/cpu_tiny_64px_b64_stem4_rerun.json
uptime

# 12. (eighth session, 2026-11-25) the depthwise-conv kernel: per module on/off on rmt_tiny's shapes, whole steps
#     interleaved on/off, and the fp32 target table at this code. Console output: run_cpu_session8.log.
uptime
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/depthwise_kernel.py --model rmt_tiny
for m in $M; do python benchmarks/speed/ab_switch.py depthwise --model $m --steps 8; done
python benchmarks/speed/ab_switch.py depthwise --model rmt_tiny --steps 8 --stem-stride 4
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 \
  --steps 8 --warmup 2 --out benchmarks/speed/cpu_tiny_64px_b64_session8.json
uptime

# 13. (ninth session, 2026-11-25) the G1 gate's lean backward and the unrolled shifted passes on/off, then sections 1-3
#     and an fp32 rerun at this code. Console output: run_cpu_session9.log.
uptime
for m in gated_swinrmt_retention_tiny gated_swinrmt_swat_tiny; do
  python benchmarks/speed/ab_switch.py unroll_shifted --model $m --steps 8
done
python benchmarks/speed/ab_switch.py lean_gate --model gated_swinrmt_retention_tiny --mode train --steps 8
session_tables session9
uptime

# 14. (tenth session, 2026-11-25) the short-attention kernel's prefetch, the folded flat rotary and the folded stem /
#     downsampling BN on/off, then sections 1-3 and an fp32 rerun at this code. Console output:
#     run_cpu_session10.log.
uptime
for m in $M; do python benchmarks/speed/ab_switch.py kernel_prefetch --model $m --steps 8; done
python benchmarks/speed/ab_switch.py fold_rotary --model rmt_tiny --mode infer --steps 8
python benchmarks/speed/ab_switch.py fuse_inference --model rmt_tiny --mode infer --steps 8
session_tables session10
uptime

# 15. (eleventh session, 2026-12-04, a different machine: an AVX2 EPYC, about 84 GFLOP/s fp32 peak, no native bf16)
#     the target table in fp32 with the CPU kernels and oneDNN projections forced on (the defaults before this
#     session), then at the new defaults (auto: on AVX-512 CPUs only, so off there). Console output: the eleventh
#     session's section of README.md. Its per-switch ratios were measured ad hoc (batch 16, 3 interleaved rounds);
#     `python benchmarks/speed/ab_switch.py short_attention` (or depthwise_kernel, onednn_linear)
#     measures the same switches at batch 64 on such a machine (without =1 the kernels are not built there).
uptime
python -m swinrmt bench --models $M --img-size 64 --batch 64 \
  --mode train infer --precision fp32 --steps 8 --warmup 2 --out benchmarks/speed/cpu_tiny_64px_b64_session11.json
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 \
  --steps 8 --warmup 2 --out benchmarks/speed/cpu_tiny_64px_b64_auto_session11.json
uptime

# 16. (twelfth session, 2026-12-04, the same AVX2 EPYC, shared: its matmul peak swung between 26 and 86 GFLOP/s)
#     the CPU kernels built with 8-float vectors on AVX2 (csrc/vec.h) and oneDNN projections on every CPU, with the
#     weight gradient on mm off AVX-512: each switch on/off at batch 64, then the target table at the new defaults.
#     At 26335dd (before the change) the first two ran as
#     `python benchmarks/speed/ab_switch.py onednn_linear --steps 6` and
#     `python benchmarks/speed/ab_switch.py conv1x1_grads --mode train --steps 5`.
uptime
python benchmarks/speed/ab_switch.py onednn_linear --mode train --steps 5
python benchmarks/speed/ab_switch.py short_attention --steps 5
python benchmarks/speed/ab_switch.py depthwise --steps 5
python benchmarks/speed/ab_switch.py short_attention --mode infer --steps 8
python benchmarks/speed/ab_switch.py fold_rotary --mode infer --steps 8
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 \
  --steps 8 --warmup 2 --out benchmarks/speed/cpu_tiny_64px_b64_session12.json
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/ffn_routes.py --repeats 6
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode infer --precision fp32 --no-memory \
  --steps 10 --warmup 2 --out benchmarks/speed/cpu_tiny_64px_b64_infer_rerun_session12.json
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 \
  --steps 8 --warmup 2 --out benchmarks/speed/cpu_tiny_64px_b64_rerun_session12.json
uptime

# 17. (thirteenth session, 2026-12-04, the same AVX2 EPYC on a steadier stretch: matmul peak samples 58-70 GFLOP/s)
#     GELU's erf in the depthwise kernel as a rational fit; the kernel library A/B against the previous revision's,
#     the ConvFFN's routes and the stem / downsampling convs against the matmul, then the target table twice and the
#     public RMT-T layout (stem stride 4).
uptime
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/fit_erf.py
python benchmarks/speed/ab_switch.py kernels --base a961473 --mode infer train --steps 8
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/ffn_routes.py --repeats 6
# (one-off, removed; `git show 862583f:benchmarks/speed/...`) python benchmarks/speed/dense_convs.py
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 \
  --steps 8 --warmup 2 --out benchmarks/speed/cpu_tiny_64px_b64_session13.json
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 \
  --steps 8 --warmup 2 --out benchmarks/speed/cpu_tiny_64px_b64_rerun_session13.json
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 --stem-stride 4 \
  --steps 10 --warmup 2 --out benchmarks/speed/cpu_tiny_64px_b64_stem4_session13.json
#     then SWAT's SiLU-gated value and head norm on the new pointwise kernel: on/off, and the target table once more
python benchmarks/speed/ab_switch.py pointwise --model gated_swinrmt_swat_tiny --mode infer train --steps 8
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 \
  --steps 8 --warmup 2 --out benchmarks/speed/cpu_tiny_64px_b64_pointwise_session13.json
uptime

"""Visual insight: decay / balanced-ALiBi profiles, attention maps of a block, G1 gate maps and their sparsity.

Nothing here changes a model's fast path. Attention maps are *recomputed* from what a mixer saw: a forward
pre-hook captures the block's mixer input, then the mixer's own q / k projections and cached per-pass tables give
the per-pass weights. For the two-pass axial mixers the effective 2-D attention of a query (r, c) on a key (r2, c2)
is  A_height[c; r -> r2] * A_width[r2; c -> c2]  (the height pass mixes the width pass's output), mapped back
through the cyclic shift and padding to map coordinates; `effective_attention` returns it and the tests check that
(effective attention) @ V reproduces the mixer. Gate maps come from a pre-hook on the G1 `OutputGate`.

All figures are written with matplotlib's Agg backend (no display needed).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from .atomic import save_figure
from .layers.decay import balanced_alibi_slopes, decay_rates
from .layers.rotary import apply_rotary, rotary_tables
from .layers.windows import axis_geometry, roll_and_pad

WHAT = ("decay", "attention", "gates")
SPARSE_THRESHOLD = 0.1


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


# -- model structure ---------------------------------------------------------------------------------------------
def blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """[("stage.block", block)] for every block of the backbone (features_only wrappers unwrapped)."""
    core = getattr(model, "model", model)
    if not hasattr(core, "stages"):
        raise ValueError("not a swinrmt backbone (no stages)")
    return [(f"{i}.{j}", b) for i, s in enumerate(core.stages) for j, b in enumerate(s.blocks)]


def get_block(model: nn.Module, which: str) -> nn.Module:
    table = dict(blocks(model))
    if which not in table:
        raise ValueError(f"no block {which!r}; blocks are STAGE.INDEX, e.g. {', '.join(list(table)[:6])}, ...")
    return table[which]


def _mixer_kind(mixer: nn.Module) -> str:
    from .layers.mixers import AxialMixer, MaSA2d, WindowMSA

    if isinstance(mixer, AxialMixer):
        return "axial"
    if isinstance(mixer, MaSA2d):
        return "masa2d"
    if isinstance(mixer, WindowMSA):
        return "window"
    raise ValueError(f"cannot visualise attention of {type(mixer).__name__}")


# -- (a) decay and balanced-ALiBi profiles -----------------------------------------------------------------------
def decay_profiles(model: nn.Module) -> list[dict[str, Any]]:
    """Per stage: gamma_h (per head), ALiBi slopes (SWAT, else None), the pass length M, and the mixer kind."""
    out = []
    seen = set()
    for name, blk in blocks(model):
        stage = name.split(".")[0]
        m = blk.mixer
        if stage in seen or not hasattr(m, "decay_a"):
            continue
        seen.add(stage)
        if getattr(m, "decay_logit", None) is not None:
            gamma = torch.sigmoid(m.decay_logit.detach().double())
        else:
            gamma = decay_rates(m.num_heads, m.decay_a, m.decay_b)
        alibi = None
        if getattr(m, "alibi", "none") != "none":
            alibi = balanced_alibi_slopes(m.num_heads)
        window = getattr(m, "window_size", None)
        out.append({"stage": int(stage), "gamma": gamma.numpy(), "alibi": None if alibi is None else alibi.numpy(),
                    "alibi_mode": getattr(m, "alibi", "none"), "window": window, "kind": type(m).__name__})
    if not out:
        raise ValueError("this model has no spatial decay (Swin uses a learned relative position bias)")
    return out


def plot_decay(model: nn.Module, path: str | Path, max_distance: int | None = None) -> Path:
    plt = _plt()
    prof = decay_profiles(model)
    fig, axes = plt.subplots(len(prof), 3, figsize=(13, 3.1 * len(prof)), squeeze=False)
    for row, p in zip(axes, prof):
        g = p["gamma"]
        heads = len(g)
        dmax = max_distance or max(8, (p["window"] or 16) - 1)
        d = np.arange(dmax + 1)
        colors = plt.cm.viridis(np.linspace(0, 1, heads))
        for h in range(heads):
            row[0].plot(d, g[h] ** d, color=colors[h], label=f"h{h} γ={g[h]:.3f}")
        row[0].set_title(f"stage {p['stage']} ({p['kind']}): decay γ_h^|Δ| per pass")
        row[0].set_xlabel("|Δ| (tokens along one axis)")
        row[0].set_ylim(0, 1.02)
        row[0].legend(fontsize=6, ncol=2)
        if p["alibi"] is not None:
            s = p["alibi"]
            dd = d if p["alibi_mode"] == "abs" else np.arange(-dmax, dmax + 1)
            x = np.abs(dd) if p["alibi_mode"] == "abs" else dd
            for h in range(heads):
                row[1].plot(dd, s[h] * x, color=colors[h], label=f"h{h} s={s[h]:+.3g}")
            row[1].axhline(0, color="k", lw=0.5)
            row[1].set_title(f"balanced ALiBi s_h·{'|Δ|' if p['alibi_mode'] == 'abs' else 'Δ'} (added before σ)")
            row[1].legend(fontsize=6, ncol=2)
        else:
            for h in range(heads):
                row[1].plot(d, d * np.log(g[h]), color=colors[h])
            row[1].set_title("log-space bias |Δ|·log γ_h (added before softmax)")
        row[1].set_xlabel("Δ")
        # 2-D Manhattan prior gamma^(|dx|+|dy|) of the fastest and slowest head, side by side
        n = min(dmax, 12)
        yy, xx = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
        man = np.abs(yy) + np.abs(xx)
        pair = np.concatenate([g[0] ** man, np.full((2 * n + 1, 1), np.nan), g[-1] ** man], axis=1)
        im = row[2].imshow(pair, cmap="magma", vmin=0, vmax=1)
        row[2].set_title(f"2-D prior γ^(|dx|+|dy|): head 0 | head {heads - 1}")
        row[2].axis("off")
        fig.colorbar(im, ax=row[2], fraction=0.04)
    fig.tight_layout()
    return _save(fig, path)


# -- (b) attention -----------------------------------------------------------------------------------------------
def _capture_input(model: nn.Module, module: nn.Module, image: torch.Tensor, index: int = 0) -> tuple:
    """Run the model once; return the positional args `module` received."""
    seen: list[tuple] = []
    h = module.register_forward_pre_hook(lambda mod, args: seen.append(tuple(a.detach() for a in args)))
    try:
        with torch.no_grad():
            model(image)
    finally:
        h.remove()
    if not seen:
        raise ValueError("the chosen module was not run by the forward pass")
    return seen[index]


def _block_dense(a: torch.Tensor) -> torch.Tensor:
    """(..., nwin, M, M) windowed weights -> (..., nwin*M, nwin*M) block-diagonal."""
    *lead, nw, m, _ = a.shape
    out = a.new_zeros(*lead, nw * m, nw * m)
    for i in range(nw):
        out[..., i * m:(i + 1) * m, i * m:(i + 1) * m] = a[..., i, :, :]
    return out


def _unroll_index(geo) -> torch.Tensor:
    """inv[o] = rolled/padded position holding original position o (roll by -shift, pad at the end)."""
    return (torch.arange(geo.length) - geo.shift) % geo.length


def axial_pass_weights(mixer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense per-pass weights in map coordinates: width (B, heads, H, W, W) [row; query col -> key col] and
    height (B, heads, W, H, H) [col; query row -> key row]."""
    b, h, w, c = x.shape
    heads, d = mixer.num_heads, mixer.head_dim
    with torch.no_grad():
        q = (mixer.q(x) * mixer.scale).view(b, h, w, heads, d)
        k = mixer.k(x).view(b, h, w, heads, d)
        if mixer.rotary == "flat":
            sin, cos = rotary_tables(h * w, d, q.dtype, q.device)
            sin, cos = sin.view(h, w, 1, d), cos.view(h, w, 1, d)
            q, k = apply_rotary(q, sin, cos), apply_rotary(k, sin, cos)
        gh, gw = mixer.geometry(h, w)
        q, k = roll_and_pad(q, gh, gw), roll_and_pad(k, gh, gw)
        from .layers.mixers.axial import height_layout, pass_weights, width_layout

        tw = mixer.pass_tables(gw, "w", q.dtype, q.device)
        th = mixer.pass_tables(gh, "h", q.dtype, q.device)
        norm = getattr(mixer, "sigmoid_norm", "none")
        aw = pass_weights(width_layout(q, gw), width_layout(k, gw), tw, mixer.kind, norm)  # (B,h,Hp,nW,Mw,Mw)
        ah = pass_weights(height_layout(q, gh), height_layout(k, gh), th, mixer.kind, norm)  # (B,h,nH,Wp,Mh,Mh)
    aw = _block_dense(aw)  # (B, heads, Hp, Wp, Wp)
    ah = _block_dense(ah.permute(0, 1, 3, 2, 4, 5))  # (B, heads, Wp, Hp, Hp)
    ih, iw = _unroll_index(gh), _unroll_index(gw)
    aw = aw[:, :, ih][:, :, :, iw][:, :, :, :, iw]
    ah = ah[:, :, iw][:, :, :, ih][:, :, :, :, ih]
    return aw, ah


def effective_attention(mixer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, heads, H*W, H*W): weight of key (r2, c2) in the output at query (r, c), in map coordinates.

    Axial mixers: A_height[c; r -> r2] * A_width[r2; c -> c2]; full 2-D MaSA and Swin window attention: their one
    softmax (window-local for Swin). `x` is the mixer input (B, H, W, C) (the block's norm1 output).
    """
    kind = _mixer_kind(mixer)
    b, h, w, c = x.shape
    if kind == "axial":
        aw, ah = axial_pass_weights(mixer, x)
        eff = torch.einsum("bncrs,bnsct->bnrcst", ah, aw)
        return eff.reshape(b, mixer.num_heads, h * w, h * w)
    heads, d = mixer.num_heads, mixer.head_dim
    with torch.no_grad():
        if kind == "masa2d":
            from .layers.decay import cached_log_decay_2d

            q, k = mixer.q(x), mixer.k(x)
            q, k = (t.reshape(b, h * w, heads, d).transpose(1, 2) for t in (q, k))
            if mixer.rotary == "flat":
                sin, cos = rotary_tables(h * w, d, q.dtype, q.device)
                q, k = apply_rotary(q, sin, cos), apply_rotary(k, sin, cos)
            bias = cached_log_decay_2d(h, w, heads, mixer.decay_a, mixer.decay_b, q.dtype, q.device)
            return torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5 + bias, dim=-1)
        return _window_msa_attention(mixer, x)


def _window_msa_attention(mixer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from .layers.mixers.axial import NEG
    from .layers.mixers.window_msa import relative_position_index
    from .layers.windows import window_allowed_2d, window_partition

    b, h, w, c = x.shape
    heads, d = mixer.num_heads, mixer.head_dim
    gh, gw = axis_geometry(h, mixer.window_size, mixer.shift), axis_geometry(w, mixer.window_size, mixer.shift)
    win = window_partition(roll_and_pad(x, gh, gw), gh, gw)
    n = gh.window * gw.window
    qkv = mixer.qkv(win).view(b, -1, n, 3, heads, d).permute(3, 0, 1, 4, 2, 5)
    q, k = qkv[0], qkv[1]
    idx = relative_position_index(gh.window, gw.window, mixer.window_size)
    rel = mixer.relative_position_bias_table[idx.reshape(-1)].view(n, n, heads).permute(2, 0, 1)
    mask = torch.where(window_allowed_2d(gh, gw), 0.0, NEG)[:, None]
    a = torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5 + rel + mask, dim=-1)  # (B, nWin, heads, N, N)
    # flat rolled/padded position of every (window, token)
    ys, xs = torch.meshgrid(torch.arange(gh.padded), torch.arange(gw.padded), indexing="ij")
    pos = window_partition((ys * gw.padded + xs)[None, :, :, None], gh, gw)[0, :, :, 0]  # (nWin, N)
    dense = a.new_zeros(b, heads, gh.padded * gw.padded, gh.padded * gw.padded)
    for i in range(pos.shape[0]):
        p = pos[i]
        dense[:, :, p[:, None], p[None, :]] = a[:, i]
    ih, iw = _unroll_index(gh), _unroll_index(gw)
    keep = (ih[:, None] * gw.padded + iw[None, :]).reshape(-1)
    return dense[:, :, keep][:, :, :, keep]


def _default_query(h: int, w: int) -> tuple[int, int]:
    return h // 2, w // 2


def plot_attention(model: nn.Module, image: torch.Tensor, path: str | Path, block: str = "0.1",
                   query: Sequence[int] | None = None, display: np.ndarray | None = None) -> Path:
    plt = _plt()
    blk = get_block(model, block)
    x = _capture_input(model, blk.mixer, image)[0][:1]
    _, h, w, _ = x.shape
    r, c = query if query is not None else _default_query(h, w)
    if not (0 <= r < h and 0 <= c < w):
        raise ValueError(f"query ({r}, {c}) is outside block {block}'s {h}x{w} map")
    mixer = blk.mixer
    kind = _mixer_kind(mixer)
    heads = mixer.num_heads
    eff = effective_attention(mixer, x)[0, :, r * w + c].view(heads, h, w)
    rows = 3 if kind == "axial" else 1
    fig, axes = plt.subplots(rows, heads + 1, figsize=(2.6 * (heads + 1), 2.6 * rows + 0.6), squeeze=False)
    disp = display if display is not None else _to_display(image[0])
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    for i in range(rows):
        axes[i, 0].imshow(disp, extent=extent)
        axes[i, 0].plot([c], [r], "c+", ms=14, mew=2)
        axes[i, 0].set_title("input + query" if i == 0 else "")
        axes[i, 0].axis("off")
    maps = []
    if kind == "axial":
        aw, ah = axial_pass_weights(mixer, x[:1])
        width = torch.zeros(heads, h, w)
        width[:, r, :] = aw[0, :, r, c]  # width pass: the query's row
        height = torch.zeros(heads, h, w)
        height[:, :, c] = ah[0, :, c, r]  # height pass: the query's column
        maps = [("width pass", width), ("height pass", height), ("effective 2-D", eff)]
    else:
        maps = [("attention", eff)]
    for i, (label, m) in enumerate(maps):
        for hd in range(heads):
            ax = axes[i, hd + 1]
            ax.imshow(disp, extent=extent, alpha=0.35)
            ax.imshow(m[hd].numpy(), cmap="inferno", alpha=0.75, extent=extent, vmin=0)
            ax.plot([c], [r], "c+", ms=10, mew=1.5)
            ax.set_title(f"{label} h{hd}", fontsize=8)
            ax.axis("off")
    fig.suptitle(f"block {block} ({type(mixer).__name__}, window={getattr(mixer, 'window_size', None)}, "
                 f"shift={getattr(mixer, 'shift', False)}), map {h}x{w}, query (row {r}, col {c})", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


# -- (c) G1 gates ------------------------------------------------------------------------------------------------
def gate_scores(model: nn.Module, image: torch.Tensor, block: str) -> torch.Tensor:
    """G1 gate values of a block, per head: (B, H, W, heads, d) (d = 1 for headwise gates)."""
    if getattr(get_block(model, block).mixer, "gate", None) is None:
        raise ValueError(f"block {block} has no G1 output gate (gated_swinrmt_retention_* have one; "
                         f"SWAT with gate='elementwise')")
    return all_gate_scores(model, image)[block]


def all_gate_scores(model: nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """{block: (B, H, W, heads, d) gate values} for every gated block, from one forward pass."""
    gates = {n: b.mixer.gate for n, b in blocks(model) if getattr(b.mixer, "gate", None) is not None}
    seen: dict[str, torch.Tensor] = {}

    def grab(name):
        def hook(mod, args):  # must return None: a pre-hook's return value would replace the gate's inputs
            seen.setdefault(name, args[1].detach())

        return hook

    hooks = [g.register_forward_pre_hook(grab(n)) for n, g in gates.items()]
    try:
        with torch.no_grad():
            model(image)
    finally:
        for h in hooks:
            h.remove()
    out = {}
    with torch.no_grad():
        for n, g in gates.items():
            s = g.scores(seen[n])  # the gate's own input: X_norm, or Y with gate_input="output"
            out[n] = s.view(*s.shape[:3], g.num_heads, -1)
    return out


def gate_sparsity(scores: torch.Tensor, threshold: float = SPARSE_THRESHOLD) -> torch.Tensor:
    """Fraction of gate values below `threshold`, per head: (heads,)."""
    return (scores < threshold).float().mean(dim=(0, 1, 2, 4))


def gated_blocks(model: nn.Module) -> list[str]:
    return [n for n, b in blocks(model) if getattr(b.mixer, "gate", None) is not None]


def plot_gates(model: nn.Module, image: torch.Tensor, path: str | Path, block: str = "0.1",
               display: np.ndarray | None = None) -> tuple[Path, dict[str, list[float]]]:
    """Per-head mean gate map of `block` + sparsity bars for every gated block. Returns (path, sparsity)."""
    plt = _plt()
    if getattr(get_block(model, block).mixer, "gate", None) is None:
        raise ValueError(f"block {block} has no G1 output gate (gated_swinrmt_retention_* have one; "
                         f"SWAT with gate='elementwise')")
    scores = all_gate_scores(model, image[:1])
    s = scores[block]
    heads = s.shape[3]
    sparsity = {name: gate_sparsity(v).tolist() for name, v in scores.items()}
    fig = plt.figure(figsize=(2.5 * (heads + 1), 6))
    gs = fig.add_gridspec(2, heads + 1)
    ax = fig.add_subplot(gs[0, 0])
    ax.imshow(display if display is not None else _to_display(image[0]))
    ax.set_title("input")
    ax.axis("off")
    mean = s[0].mean(-1)  # (H, W, heads)
    for hd in range(heads):
        ax = fig.add_subplot(gs[0, hd + 1])
        m = mean[:, :, hd].numpy()
        im = ax.imshow(m, cmap="viridis")  # auto-scaled per head: the range is in the title
        ax.set_title(f"h{hd}: σ in [{m.min():.2f}, {m.max():.2f}]\n<{SPARSE_THRESHOLD}: "
                     f"{sparsity[block][hd]:.0%}", fontsize=8)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046)
    ax = fig.add_subplot(gs[1, :])
    names = list(sparsity)
    width = 0.8 / max(len(v) for v in sparsity.values())
    for hd in range(max(len(v) for v in sparsity.values())):
        vals = [sparsity[n][hd] if hd < len(sparsity[n]) else np.nan for n in names]
        ax.bar(np.arange(len(names)) + hd * width, vals, width, label=f"h{hd}")
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
    ax.set_xticklabels(names, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_xlabel("block (stage.index)")
    ax.set_ylabel(f"fraction of gates < {SPARSE_THRESHOLD}")
    ax.set_title("G1 gate sparsity per head")
    ax.legend(fontsize=6, ncol=8)
    fig.suptitle(f"G1 output gate of block {block} ({'headwise' if s.shape[-1] == 1 else 'elementwise'})")
    fig.tight_layout()
    return _save(fig, path), sparsity


# -- inputs ------------------------------------------------------------------------------------------------------
def _to_display(x: torch.Tensor) -> np.ndarray:
    x = x.detach().float()
    x = (x - x.min()) / (x.max() - x.min() + 1e-8)
    return x.permute(1, 2, 0).numpy() if x.shape[0] == 3 else x[0].numpy()


def load_image(path: str | None, size: Sequence[int], mean: Sequence[float], std: Sequence[float],
               in_chans: int = 3) -> tuple[torch.Tensor, np.ndarray]:
    """(1, C, H, W) normalised tensor + an RGB display array; the built-in digits sample when `path` is None."""
    from PIL import Image

    if path is None:
        from sklearn.datasets import load_digits

        d = load_digits()
        arr = (d.images[0] / 16.0 * 255).astype(np.uint8)  # a "0", 8x8
        img = Image.fromarray(arr).convert("RGB")
    else:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image not found: {path}")
        try:
            img = Image.open(path).convert("RGB")
        except Exception as exc:
            raise ValueError(f"{path} is not a readable image ({exc})") from None
    img = img.resize((int(size[1]), int(size[0])), Image.BICUBIC)
    disp = np.asarray(img).astype(np.float32) / 255.0
    x = torch.from_numpy(disp).permute(2, 0, 1)
    x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    if in_chans != 3:
        x = x.mean(0, keepdim=True).expand(in_chans, -1, -1)
    return x[None].contiguous(), disp


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    save_figure(fig, path)
    _plt().close(fig)
    return path


def visualise(model: nn.Module, out_dir: str | Path, *, image: str | None = None, block: str = "0.1",
              query: Sequence[int] | None = None, what: Sequence[str] = WHAT,
              input_size: Sequence[int] | None = None) -> dict[str, Any]:
    """Write the requested figures to `out_dir`; returns {"files": [...], "gate_sparsity": {...} (if plotted)}."""
    bad = [w for w in what if w not in WHAT]
    if bad:
        raise ValueError(f"unknown figure(s) {bad}; accepted: {', '.join(WHAT)}")
    from .export import default_input_size

    model.eval()
    cfg = getattr(model, "swinrmt_cfg", None) or getattr(model, "default_cfg", {}) or {}
    size = tuple(input_size or default_input_size(model))
    x, disp = load_image(image, size, cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225)),
                         getattr(model, "in_chans", 3))
    out = Path(out_dir)
    report: dict[str, Any] = {"files": []}
    if "decay" in what:
        try:
            report["files"].append(str(plot_decay(model, out / "decay.png")))
        except ValueError as exc:
            if list(what) == ["decay"]:
                raise
            report["skipped_decay"] = str(exc)
    if "attention" in what:
        report["files"].append(str(plot_attention(model, x, out / "attention.png", block, query, disp)))
    if "gates" in what:
        gate_block = block
        if getattr(get_block(model, block).mixer, "gate", None) is None and gated_blocks(model):
            gate_block = gated_blocks(model)[0]
        try:
            path, sparsity = plot_gates(model, x, out / "gates.png", gate_block, disp)
            report["files"].append(str(path))
            report["gate_sparsity"] = sparsity
        except ValueError as exc:
            if list(what) == ["gates"]:
                raise
            report["skipped_gates"] = str(exc)
    return report


# -- CLI ---------------------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="save_pretrained dir, hub id org/name, trainer run dir or checkpoint file")
    src.add_argument("--model", help="registered model name (random weights: shows the priors, not learned maps)")
    p.add_argument("--image", help="input image (default: the built-in digits sample)")
    p.add_argument("--block", default="0.1", help="STAGE.INDEX of the block to show (default 0.1, a shifted block)")
    p.add_argument("--query", type=int, nargs=2, metavar=("ROW", "COL"),
                   help="query token in the block's feature map (default: the centre)")
    p.add_argument("--what", default=",".join(WHAT), help=f"comma-separated subset of {','.join(WHAT)}")
    p.add_argument("--out", default="viz", help="output directory for the PNGs (default ./viz)")
    p.add_argument("--img-size", type=int, help="input side (default: the model's img_size)")
    p.add_argument("--weights", default="auto", help="trainer checkpoints: auto (EMA if present), ema or model")


def run(args: argparse.Namespace) -> int:
    from .export import load_model

    model = load_model(args.model, args.checkpoint, weights=args.weights)
    size = (args.img_size, args.img_size) if args.img_size else None
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    report = visualise(model, args.out, image=args.image, block=args.block, query=args.query, what=what,
                       input_size=size)
    for f in report["files"]:
        print(f"wrote {f}")
    for key in ("skipped_decay", "skipped_gates"):
        if key in report:
            print(f"skipped {key.split('_')[1]}: {report[key]}")
    for name, vals in report.get("gate_sparsity", {}).items():
        print(f"G1 gate sparsity (< {SPARSE_THRESHOLD}) block {name}: " + ", ".join(
            f"h{i} {v:.1%}" for i, v in enumerate(vals)))
    return 0

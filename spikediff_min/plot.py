"""Plot helpers for the package, run_all.py and the notebooks (like snntorch's spikeplot).

Every function draws on a new figure and, given `path`, saves it there (folders created) and
closes it; it returns the figure otherwise. Images are uint8 [N, C, H, W].
"""
import os

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _finish(fig, path):
    if path is None:
        return fig
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def grid_image(images, nrow=10, pad=2):
    """uint8 [N, C, H, W] -> one uint8 image [rows*(H+pad), nrow*(W+pad), C] for imshow."""
    images = np.asarray(images)
    n, c, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    out = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, np.uint8)
    for i, im in enumerate(images):
        r, k = divmod(i, nrow)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = im.transpose(1, 2, 0)
    return out


def image_grid(images, nrow=10, title=None, path=None):
    g = grid_image(images, nrow)
    fig, ax = plt.subplots(figsize=(g.shape[1] / 40, g.shape[0] / 40))
    ax.imshow(g[..., 0] if g.shape[2] == 1 else g, cmap="gray", vmin=0, vmax=255)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def reconstructions(originals, recons, n=10, path=None):
    """Top row originals, bottom row their reconstructions."""
    both = np.concatenate([np.asarray(originals[:n]), np.asarray(recons[:n])])
    return image_grid(both, nrow=n, title="top: test images, bottom: VQ-SVAE reconstructions", path=path)


def loss_curves(histories, ylabel="loss (log scale)", path=None):
    """histories: {stage name: history dict with 'step' and 'loss' (and other losses)};
    ylabel: one label for all panels, or {stage name: label} (say the unit, e.g. bits per token)."""
    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 3.5), squeeze=False)
    for ax, (name, h) in zip(axes[0], histories.items()):
        for k, v in h.items():
            if k != "step" and isinstance(v, list) and len(v) == len(h["step"]):
                ax.plot(h["step"], v, label=k, lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("training step (one mini-batch each)")
        ax.set_ylabel(ylabel[name] if isinstance(ylabel, dict) else ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name)
        ax.legend()
    return _finish(fig, path)


def fid_vs_temperature(temperatures, fids, recon_fid=None, path=None):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(temperatures, fids, "o-", label="samples")
    if recon_fid is not None:
        ax.axhline(recon_fid, color="gray", ls="--", label="reconstructions (bound)")
    ax.set_xlabel("temperature")
    ax.set_ylabel("FID")
    ax.legend()
    return _finish(fig, path)


def spike_raster(spikes, title=None, neuron_values=None, neuron_label="neuron", path=None):
    """spikes [T, N] (0/1) -> raster: one row per neuron, one column per time step, a black cell
    per spike. Every neuron gets its row, silent ones too, so the y range is always 0..N-1; with
    `neuron_values` [N] (e.g. each neuron's input current) the y ticks show those values instead."""
    s = np.asarray(spikes, dtype=float)
    T, n = s.shape
    fig, ax = plt.subplots(figsize=(min(7, 2.5 + 0.3 * T), min(8, max(3, 0.06 * n + 1.5))))
    ax.imshow(s.T, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest", origin="lower",
              extent=(-0.5, T - 0.5, -0.5, n - 0.5))
    for k in range(1, T):                                  # thin lines between steps (and neurons, if few)
        ax.axvline(k - 0.5, color="0.8", lw=0.5)
    if n <= 150:
        for k in range(1, n):
            ax.axhline(k - 0.5, color="0.9", lw=0.3)
    ax.set_xlabel("time step t")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(-0.5, n - 0.5)
    if neuron_values is not None:
        v = np.asarray(neuron_values)
        ticks = np.linspace(0, n - 1, min(n, 7)).round().astype(int)
        ax.set_yticks(ticks, [f"{v[i]:.2f}" for i in ticks])
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(neuron_label)
    if title:
        ax.set_title(title, fontsize=10)
    return _finish(fig, path)


def bars(names, values, ylabel, title=None, path=None):
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(names)), 3.5))
    ax.bar(range(len(names)), values)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


# --- helpers for the tutorial notebooks -------------------------------------------------------

def show(fig_or_path):
    """Show a figure (then close it) or a saved image file in a notebook's output."""
    from IPython.display import Image, display
    if isinstance(fig_or_path, (str, os.PathLike)):
        display(Image(filename=os.fspath(fig_or_path)))
    else:
        display(fig_or_path)
        plt.close(fig_or_path)


def curves(x, ys, xlabel, ylabel, title=None, logy=False, integer_x=False, path=None):
    """One line per entry of ys {label: values}, all against the same x (integer ticks if integer_x)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for label, y in ys.items():
        ax.plot(np.asarray(x), np.asarray(y), label=label, lw=1.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        ax.set_title(title)
    ax.legend()
    return _finish(fig, path)


def membrane_trace(current, membrane, spikes, v_threshold=1.0, title=None, path=None):
    """One neuron over time: input current X[t], charged membrane H[t] with the threshold, spikes S[t]."""
    x, h, s = (np.asarray(a).reshape(-1) for a in (current, membrane, spikes))
    t = np.arange(len(x))
    fig, axes = plt.subplots(3, 1, figsize=(7, 5), sharex=True, gridspec_kw={"height_ratios": [1, 2, 0.6]})
    axes[0].step(t, x, where="mid", color="tab:blue")
    axes[0].set_ylabel("input X[t]\n(dimensionless)")
    axes[1].plot(t, h, ".-", color="tab:orange", label="membrane H[t] (before reset)")
    axes[1].axhline(v_threshold, color="k", ls="--", lw=1, label="threshold")
    axes[1].set_ylabel("membrane H[t]\n(dimensionless)")
    axes[1].legend(loc="upper right", fontsize=8)
    axes[2].vlines(t[s > 0], 0, 1, color="k")
    axes[2].set_yticks([])
    axes[2].set_ylabel("S[t]")
    axes[2].set_xlabel("time step t")
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        axes[0].set_title(title)
    return _finish(fig, path)


def token_grids(grids, mask_id, titles=None, numbers=True, path=None):
    """Token grids [N, h, w] side by side; MASK (= mask_id) cells grey, ids written in the cells."""
    g = np.asarray(grids)
    fig, axes = plt.subplots(1, len(g), figsize=(2.2 * len(g), 2.4), squeeze=False)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("lightgrey")
    for i, (ax, grid) in enumerate(zip(axes[0], g)):
        ax.imshow(np.ma.masked_equal(grid, mask_id), cmap=cmap, vmin=0, vmax=mask_id - 1)
        if numbers:
            for (r, c), v in np.ndenumerate(grid):
                ax.text(c, r, "M" if v == mask_id else str(v), ha="center", va="center", fontsize=6,
                        color="k" if v == mask_id else "w")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    return _finish(fig, path)


def codebook_usage(counts, path=None):
    """How often each code was chosen, codes sorted from most to least used."""
    c = np.sort(np.asarray(counts))[::-1]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(np.arange(len(c)), c, width=1.0)
    ax.set_yscale("log")          # one background code usually dominates
    ax.set_xlabel("code (sorted by use)")
    ax.set_ylabel("count (log scale)")
    ax.set_title(f"{int((c > 0).sum())} of {len(c)} codes used")
    return _finish(fig, path)

"""Plot helpers for the package, run_all.py and the notebooks (like snntorch's spikeplot).

Every function draws on a new figure and, given `path`, saves it there (folders created) and
closes it; it returns the figure otherwise. Images are uint8 [N, C, H, W].
"""
import os

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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


def loss_curves(histories, path=None):
    """histories: {stage name: history dict with 'step' and 'loss' (and other losses)}."""
    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 3.5), squeeze=False)
    for ax, (name, h) in zip(axes[0], histories.items()):
        for k, v in h.items():
            if k != "step" and isinstance(v, list) and len(v) == len(h["step"]):
                ax.plot(h["step"], v, label=k, lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
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


def spike_raster(spikes, title=None, path=None):
    """spikes [T, N] (0/1) -> raster plot (neuron vs time)."""
    s = np.asarray(spikes)
    t, n = np.nonzero(s)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.scatter(t, n, marker="|", s=40, color="k")
    ax.set_xlabel("time step")
    ax.set_ylabel("neuron")
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def bars(names, values, ylabel, title=None, path=None):
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(names)), 3.5))
    ax.bar(range(len(names)), values)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return _finish(fig, path)

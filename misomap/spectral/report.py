"""The spectral report: metric tables as CSV and Markdown, and the plots a person looks at
(predicted vs observed, reconstructions, the latent space, LimeSoDa embeddings vs PLSR)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402


def plot_pred_vs_obs(observed: np.ndarray, predictions: dict[str, np.ndarray], names: tuple[str, ...],
                     path: Path) -> Path:
    """One panel per property, every labelled prediction against the observations, 1:1 line."""
    cols = min(3, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
    for j, name in enumerate(names):
        ax = axes.flat[j]
        for label, pred in predictions.items():
            ax.scatter(observed[:, j], pred[:, j], s=8, alpha=0.6, label=label)
        finite = observed[:, j][~np.isnan(observed[:, j])]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("observed")
        ax.set_ylabel("predicted")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_reconstructions(axis: np.ndarray, curves: dict[str, np.ndarray], ids: np.ndarray, path: Path) -> Path:
    """A few spectra, each with its labelled versions (measured, reconstructed, converted)."""
    n = len(ids)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.2 * n), squeeze=False, sharex=True)
    for i in range(n):
        ax = axes[i, 0]
        for label, values in curves.items():
            ax.plot(axis, values[i], lw=0.9, label=label)
        ax.set_title(str(ids[i]), fontsize=8)
        ax.invert_xaxis()
    axes[0, 0].legend(fontsize=7)
    axes[-1, 0].set_xlabel("wavenumber (cm-1)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_latent(embeddings: np.ndarray, colour: np.ndarray, label: str, path: Path,
                others: np.ndarray | None = None, others_label: str = "") -> Path:
    """The first two principal components of the latent space, coloured by a property."""
    pca = PCA(n_components=2).fit(embeddings)
    xy = pca.transform(embeddings)
    fig, ax = plt.subplots(figsize=(6, 5))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=colour, s=8, cmap="viridis")
    if others is not None and len(others):
        oxy = pca.transform(others)
        ax.scatter(oxy[:, 0], oxy[:, 1], s=10, marker="x", c="red", alpha=0.6, label=others_label)
        ax.legend(fontsize=7)
    fig.colorbar(sc, label=label)
    ax.set_xlabel(f"PC1 ({pca.explained_variance_ratio_[0]:.0%})")
    ax.set_ylabel(f"PC2 ({pca.explained_variance_ratio_[1]:.0%})")
    ax.set_title("MIR latent space")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_metric_bars(table: pd.DataFrame, metric: str, group: str, path: Path) -> Path:
    """Bars of `metric` per property, one bar per (features, model), one panel per `group` value."""
    groups = list(dict.fromkeys(table[group]))
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
    for ax, g in zip(axes[0], groups):
        sub = table[table[group] == g]
        wide = sub.pivot_table(index="property", columns=["features", "model"], values=metric)
        wide.columns = [f"{f}/{m}" for f, m in wide.columns]
        wide.plot.bar(ax=ax, rot=0)
        ax.set_title(f"{g}: {metric}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table, floats to 3 decimals."""
    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def write_markdown(path: Path, title: str, sections: list[tuple[str, str | pd.DataFrame]]) -> Path:
    """A Markdown report: text sections and tables (3 significant decimals)."""
    lines = [f"# {title}", ""]
    for heading, body in sections:
        lines += [f"## {heading}", ""]
        lines.append(markdown_table(body) if isinstance(body, pd.DataFrame) else body)
        lines.append("")
    path.write_text("\n".join(lines))
    return path

"""Pictures of a run (matplotlib, only when asked for): its loss and accuracy curves
(``bpc train --plot``, ``bpc plot`` over one run or several, read back by
``run_history``) and, for a small model, its fit over the training data (decision
regions, or a fitted curve). Every image is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..compiler.vocab import optimizer_defaults

from . import data as data_mod, files
from .arrays import host_dtype
from .checkpoint import read_checkpoint_file
from .errors import UserError
from .evaluate import predict_all, predicted_class, target_class, task_kind
from .history import History, csv_history, is_saved_row, numeric_row, saved_rows
from .loader import model_name
from .runfolder import write_atomic, write_failed

def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("--plot needs matplotlib, which is not installed",
                        "install it with: python3 -m pip install "
                        "'backprop-compiler[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Temporaries of an image older than this are a killed writer's (another may be writing).
STALE_SECONDS = 3600.0


def save_figure(plt, fig, path: Path) -> None:
    """``fig`` written to ``path`` in the format its suffix names (.png by default),
    atomically: a symbolic link there is replaced, never followed (``write_atomic``);
    a stale temporary of it is removed first. Closes the figure."""
    path = Path(path)
    try:
        fmt = path.suffix[1:].lower() or "png"
        if fmt not in fig.canvas.get_supported_filetypes():
            raise UserError(f"cannot write {path}: .{fmt} is not an image format "
                            "matplotlib writes", "name the image .png, .svg or .pdf")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_failed(path, e) from None
        if path.is_dir() and not path.is_symlink():
            raise UserError(f"cannot write {path}: it is a folder", "give a file name")
        files.remove_temporaries(path.parent, (path.name,), STALE_SECONDS)
        write_atomic(path, lambda f: fig.savefig(f, format=fmt, dpi=100))
    finally:
        plt.close(fig)


def plot_title(module, settings) -> str:
    lr = settings.opt.get("lr", optimizer_defaults(settings.optimizer).get("lr"))
    return f"{model_name(module)}: {settings.optimizer}, learning rate {lr:g}"


def plot_history(history: list[dict], path: Path, title: str | None = None) -> None:
    """The loss curves, and beside them the accuracy curves of a classifier (a
    regression gets the loss panel alone)."""
    plot_runs([("", history)], path, title)


# Each split's curves: its place in the colour cycle (one run) and its line style
# (several runs, one colour each).
SPLITS = {"train": (0, "-"), "val": (2, ":"), "test": (1, "--")}


def plot_runs(runs: list[tuple[str, list[dict]]], path: Path, title: str | None = None
              ) -> None:
    """The curves of one run, or of several runs on the same axes (``bpc plot``): each
    run one colour, training solid, validation dotted and test dashed, labelled with the
    run's name. A curve joins the epochs where its measure was taken (the training loss
    every epoch, the evaluations every ``eval_every``)."""
    plt = _pyplot()
    runs = [(label, [numeric_row(r) for r in history]) for label, history in runs]
    several = len(runs) > 1
    accs = [(k, f"{split} accuracy") for split in SPLITS for k in [f"{split}_acc"]
            if any(r[k] is not None for _, rows in runs for r in rows)]
    fig, axes = plt.subplots(1, 2 if accs else 1, figsize=(10 if accs else 5.5, 4),
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def curve(ax, k, rows, key, what, name):
        points = [(r["epoch"], r[key]) for r in rows if r[key] is not None]
        if not points:
            return
        place, dashes = SPLITS[what.split()[0]]
        style = {"color": colors[(k if several else place) % len(colors)],
                 "linestyle": dashes if several else "-",
                 "marker": "." if len(points) < 30 else None}
        ax.plot(*zip(*points), label=f"{name} {what}".strip(), **style)

    ax = axes[0][0]
    losses = []
    loss_keys = [("loss", "train loss"), ("val_loss", "val loss"), ("test_loss", "test loss")]
    for k, (name, rows) in enumerate(runs):
        for key, what in loss_keys:
            curve(ax, k, rows, key, what, name)
        losses += [r[key] for r in rows for key, _ in loss_keys
                   if r[key] is not None and np.isfinite(r[key])]
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if losses and min(losses) > 0 and max(losses) / min(losses) > 3:
        ax.set_yscale("log")  # a loss falling by decades; a flat one reads better linear
    ax.legend()
    if accs:
        ax = axes[0][1]
        for k, (name, rows) in enumerate(runs):
            for key, what in accs:
                curve(ax, k, rows, key, what, name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(plt, fig, path)


def run_history(path: Path) -> tuple[str, "History"]:
    """(name, history) of a run: ``path`` is its --out folder, its checkpoint.npz or
    its history.csv; the name is the run folder's. A UserError names what is missing."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    csv_path = path if path.suffix == ".csv" else folder / "history.csv"
    rows: list[dict] = []
    if csv_path.is_file():
        rows = csv_history(csv_path)
    elif path.suffix == ".npz" or (folder / "checkpoint.npz").is_file():
        saved = read_checkpoint_file(path).meta.get("history")
        rows = saved_rows([r for r in (saved if isinstance(saved, list) else [])
                           if is_saved_row(r)])
    else:
        raise UserError(f"{path}: no run here (no history.csv or checkpoint.npz)",
                        "give the --out folder of a bpc train run")
    if not rows:
        raise UserError(f"{csv_path if csv_path.is_file() else path}: the run has no "
                        "history rows yet", "train it for at least one epoch")
    try:
        return folder.resolve().name, History(rows)
    except (ValueError, TypeError, OverflowError):
        raise UserError(f"{csv_path if csv_path.is_file() else path}: its history rows "
                        "are not numbers",
                        "it is damaged or not from bpc") from None


def plot_fit(module, params, dataset, path: Path, title: str | None = None,
             state: dict | None = None) -> bool:
    """What a learner wants to see of a small model over its data: the decision regions
    of a classifier of 2-D points, or the fitted curve of a regression of one number on
    one number. False (nothing written) for any other model."""
    if len(module.INPUTS) != 1 or len(module.TARGETS) != 1:
        return False
    (xname,), (tname,) = list(module.INPUTS), list(module.TARGETS)
    arrays = data_mod.conform(dataset.train, module, f"training data ({dataset.name})")
    x, t = np.asarray(arrays[xname]), np.asarray(arrays[tname])
    if x.ndim != 2 or data_mod.batch_axes(module).get(xname) != 0:
        return False
    kind = task_kind(module, arrays)
    plt = _pyplot()
    with np.errstate(all="ignore"):
        if x.shape[1] == 2 and kind is not None:
            labels = _class_of(module, t, kind)
            pad = 0.1 * (x.max(axis=0) - x.min(axis=0)) + 1e-9
            lo, hi = x.min(axis=0) - pad, x.max(axis=0) + pad
            g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
            grid = np.stack([g0.ravel(), g1.ravel()], axis=1)
            grid = grid.astype(host_dtype(module))
            out = np.asarray(predict_all(module, params, {xname: grid}, state=state))
            region = _class_of(module, out, kind, predicted=True).reshape(g0.shape)
            fig, ax = plt.subplots(figsize=(5.5, 5))
            k = int(max(labels.max(), region.max())) + 1
            cmap = plt.get_cmap("tab10")
            ax.contourf(g0, g1, region, levels=np.arange(k + 1) - 0.5, colors=[
                cmap(i) for i in range(k)], alpha=0.25)
            for c in range(k):
                m = labels == c
                ax.scatter(x[m, 0], x[m, 1], s=18 if len(x) > 20 else 80, color=cmap(c), edgecolor="k",
                           linewidth=0.4, label=f"class {c}")
            ax.set_xlabel(f"{xname}[0]")
            ax.set_ylabel(f"{xname}[1]")
            ax.legend(loc="best", fontsize=8)
            ax.set_title("decision regions over the training data")
        elif x.shape[1] == 1 and kind is None and t.size == len(x):
            xs = np.linspace(x.min(), x.max(), 400).reshape(-1, 1).astype(host_dtype(module))
            out = np.asarray(predict_all(module, params, {xname: xs}, state=state))
            if out.size != len(xs):
                return False
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.scatter(x[:, 0], t.ravel(), s=10, alpha=0.6, label="training data")
            ax.plot(xs[:, 0], out.ravel(), color="C3", linewidth=2, label="model")
            ax.set_xlabel(xname)
            ax.set_ylabel(tname)
            ax.legend()
            ax.set_title("fitted curve over the training data")
        else:
            return False
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(plt, fig, path)
    return True


def plot_weights(panels: list[tuple[str, np.ndarray]], rows: list[str] | None,
                 cols: list[str] | None, path: Path, title: str) -> None:
    """Matrices (attention weights [T_out, T_in], one panel per head) as heat maps side by
    side, on one colour scale from 0, ``rows``/``cols`` (characters) on the axes."""
    plt = _pyplot()
    height, width = panels[0][1].shape
    size = max(3.0, 0.22 * max(height, width) + 1.5)
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(size * width / max(height, width) * len(panels) + 1.2,
                                      size * height / max(height, width) + 0.8))
    top = max(float(m.max()) for _, m in panels) or 1.0
    for ax, (name, matrix) in zip(axes[0], panels):
        image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=top, aspect="equal")
        ax.set_title(name, fontsize=9)
        for labels, ticks, n in ((cols, ax.set_xticks, width), (rows, ax.set_yticks, height)):
            if labels is None:
                continue
            ticks(range(n), [_shown(c) for c in labels], fontsize=7, fontfamily="monospace")
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8)
    fig.suptitle(title, fontsize=10)
    save_figure(plt, fig, path)


def _shown(char: str) -> str:
    """A character as an axis label: a space as the open box, a newline as \\n."""
    return "\u2423" if char == " " else char if char.isprintable() else repr(char)[1:-1]


def _class_of(module, values, kind, predicted: bool = False) -> np.ndarray:
    """Class numbers of targets (or, ``predicted``, of outputs), one per example."""
    c = predicted_class(module, values) if predicted else target_class(module, values)
    return np.asarray(c).astype(int).reshape(len(c), -1)[:, 0]

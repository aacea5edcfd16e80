"""How much ties decide the KNN probe, and its chance level: tables and a report section.

The probe records, per run, epoch and time slice, the share of training samples whose k nearest
neighbours ties decided (``probe == "knn_tie_share"``); where it is high the states of the slice
have collapsed and the map there says little."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd

from .collect import Collection
from .formatting import html_table
from .templating import Markup, render

__all__ = ["tie_share_table", "tie_share_summary", "tie_share_section", "CHANCE_LEVELS"]

# Chance level of a 3-NN probe with random, balanced labels: resubstitution
# counts the sample's own vote (it needs one of two other votes: 1 - 1/4);
# where every state of a slice is tied, the 3 voters are a random draw and
# the sample's own vote is no longer guaranteed; leave-one-out never has it.
CHANCE_LEVELS = {
    "resubstitution": "about 0.75 with distinct states (the sample's own vote counts), about 0.5 where all "
    "states of a slice are tied",
    "leave_one_out": "about 0.5 (the sample is not among its own neighbours)",
}
_RUN_KEYS = ["study", "run_id", "source", "labels", "pair", "replicate", "knn_ties", "knn_mode"]
MOSTLY_TIED = 0.5  # a slice where ties decide the neighbours of more than half of the samples


def tie_share_table(collection: Collection) -> pd.DataFrame:
    """One row per run and epoch: the tie share averaged over time slices, its max, and the share of mostly-tied slices.

    Runs recorded without tie-share rows are left out (``Collection.runs.has_tie_share``).
    """
    columns = [*_RUN_KEYS, "epoch", "tie_share_mean", "tie_share_max", "slices_mostly_tied"]
    frames = []
    runs = collection.runs
    if len(runs) and "has_tie_share" in runs:
        runs = runs[runs["has_tie_share"]]
    for shape, group in runs.groupby("shape", sort=True):
        stack = collection.tie_maps[shape][group["map_row"].to_numpy()]  # runs x epochs x slices
        n_runs, n_epochs, _ = stack.shape
        block = group[_RUN_KEYS].loc[group.index.repeat(n_epochs)].reset_index(drop=True)
        block["epoch"] = np.tile(np.arange(1, n_epochs + 1), n_runs)
        with np.errstate(invalid="ignore"):
            block["tie_share_mean"] = np.nanmean(stack, axis=2).reshape(-1)
            block["tie_share_max"] = np.nanmax(stack, axis=2).reshape(-1)
            block["slices_mostly_tied"] = np.nanmean(
                np.where(np.isnan(stack), np.nan, stack > MOSTLY_TIED), axis=2
            ).reshape(-1)
        frames.append(block)
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames, ignore_index=True)[columns]
    return table.sort_values(
        ["study", "source", "labels", "pair", "replicate", "run_id", "epoch"], kind="stable"
    ).reset_index(drop=True)


def tie_share_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per data source, labels and probe rule: runs, mean tie share overall, in the first and last epoch, and the
    share of (run, epoch) rows whose slices are mostly tied on average."""
    keys = ["source", "labels", "knn_ties", "knn_mode"]
    columns = [
        *keys,
        "n_runs",
        "tie_share_mean",
        "tie_share_first_epoch",
        "tie_share_last_epoch",
        "tie_share_max",
        "slices_mostly_tied",
    ]
    if table.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, group in table.groupby(keys, sort=True):
        first = group[group["epoch"] == group["epoch"].min()]
        last = group[group["epoch"] == group["epoch"].max()]
        rows.append(
            {
                **dict(zip(keys, key)),
                "n_runs": group["run_id"].nunique(),
                "tie_share_mean": group["tie_share_mean"].mean(),
                "tie_share_first_epoch": first["tie_share_mean"].mean(),
                "tie_share_last_epoch": last["tie_share_mean"].mean(),
                "tie_share_max": group["tie_share_max"].max(),
                "slices_mostly_tied": group["slices_mostly_tied"].mean(),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def _mean_maps(collection: Collection) -> list[tuple[str, np.ndarray]]:
    """(source, mean tie-share map over its runs) per source and map shape."""
    out = []
    runs = collection.runs
    runs = runs[runs["has_tie_share"]] if len(runs) else runs
    for (source, shape), group in runs.groupby(["source", "shape"], sort=True):
        stack = collection.tie_maps[shape][group["map_row"].to_numpy()]
        with np.errstate(invalid="ignore"):
            out.append((f"{source} ({len(group)} runs, {shape} epochs x slices)", np.nanmean(stack, axis=0)))
    return out


def _figure(maps: list[tuple[str, np.ndarray]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(5.5 * len(maps), 3.8), squeeze=False)
    for ax, (title, values) in zip(axes[0], maps):
        image = ax.imshow(
            values,
            aspect="auto",
            origin="lower",
            vmin=0,
            vmax=1,
            cmap="magma",
            extent=(0.5, values.shape[1] + 0.5, 0.5, values.shape[0] + 0.5),
        )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("time slice")
        ax.set_ylabel("epoch")
    fig.colorbar(image, ax=axes[0].tolist(), label="share of samples decided by ties")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def tie_share_section(collection: Collection, figures: bool = True) -> dict:
    """The report section: ``{"title", "html", "tables": {name: DataFrame}, "figures": {name: PNG bytes}}``.

    ``html`` is a fragment (Markup) with the figure embedded (base64), so it can be placed as is.
    """
    table = tie_share_table(collection)
    summary = tie_share_summary(table)
    runs = collection.runs
    rules = sorted(set(zip(runs["knn_ties"], runs["knn_mode"]))) if len(runs) else []
    figs: dict[str, bytes] = {}
    if not table.empty and figures:
        figs["knn_tie_share.png"] = _figure(_mean_maps(collection))
    html = render(
        "report_ties.html.j2",
        rules=[(ties, mode, CHANCE_LEVELS[mode]) for ties, mode in rules],
        mostly_tied=MOSTLY_TIED,
        n_without=int((~runs["has_tie_share"]).sum()) if len(runs) else 0,
        summary=None if table.empty else html_table(summary),
        figure=("data:image/png;base64," + base64.b64encode(figs["knn_tie_share.png"]).decode() if figs else None),
    )
    return {
        "title": "KNN probe: ties and chance level",
        "html": Markup(html),
        "tables": {"knn_tie_share": table, "knn_tie_share_by_source": summary},
        "figures": figs,
    }

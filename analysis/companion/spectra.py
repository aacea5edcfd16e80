"""Report section: gradient spectra by group (effective rank, top singular value) per layer over
training, with the group difference tested across replicate runs (docs/companion_spectra_dense.md).

CLI: ``python -m analysis.companion.spectra --root OUTPUTS --study headline --out DIR``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .common import (
    done_runs,
    figure_html,
    main_cli,
    para,
    save_figure,
    section_html,
    skipped_note,
    summarise,
    table_html,
)

TABLE = "gradient_spectrum"
TITLE = "Gradient spectra by group"
STATS = {"effective_rank": "effective rank", "sv1": "top singular value"}


# ---------------------------------------------------------------------------
# gradient spectra
# ---------------------------------------------------------------------------
def _group_label(group: str, group_by: str, class_names: list[str]) -> str:
    if group == "all" or group_by != "class" or not str(group).lstrip("-").isdigit():
        return str(group)
    k = int(group)
    if len(class_names) == 2 and k in (0, 1):
        return ("first", "second")[k] + " class of the pair"
    return class_names[k] if 0 <= k < len(class_names) else str(group)


def collect(study_dir: Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The spectra of every done run, long format, with run identity and the ``x`` axis (epoch)."""
    runs, skipped = done_runs(study_dir, (TABLE,), missing_note=" (probe off)", summary_required=False)
    frames = []
    for run in runs:
        f = run[TABLE]
        design = run["design"]
        names = [str(n) for n in design.get("class_names") or []]
        keep = (f.stat == "effective_rank") | ((f.stat == "sv") & (f["index"] == 1)) | (f.stat == "frobenius")
        f = f[keep].copy()
        f["stat"] = np.where(f.stat == "sv", "sv1", f.stat)
        f["run_id"] = run["run_id"]
        f["cell"] = str(design.get("cell", ""))
        f["panel"] = str(design.get("data_source") or run["config"].get("study", {}).get("name", ""))
        f["replicate"] = int(design.get("replicate", 0))
        f["group_label"] = [_group_label(g, gb, names) for g, gb in zip(f.group, f.group_by)]
        f["pair_names"] = " | ".join(names) if len(names) == 2 else ""
        frames.append(f.drop(columns=[c for c in ("index",) if c in f]))
    if not frames:
        return pd.DataFrame(), skipped
    data = pd.concat(frames, ignore_index=True)
    # a panel whose runs all share one class pair: name its classes rather than their order
    for _panel, part in data.groupby("panel"):
        pairs = part.pair_names.unique()
        if len(pairs) == 1 and pairs[0]:
            first, second = pairs[0].split(" | ")
            rename = {"first class of the pair": first, "second class of the pair": second}
            idx = part.index
            data.loc[idx, "group_label"] = data.loc[idx, "group_label"].replace(rename)
    return data.drop(columns="pair_names"), skipped


def group_tests(data: pd.DataFrame, kinds=("gradient",), stats_=tuple(STATS)) -> pd.DataFrame:
    """One test per (cell, layer, kind, stat, epoch) across the cell's replicate runs; Holm per stat."""
    from scipy import stats

    from .power import holm

    rows = []
    part_all = data[(data.group != "all") & data.kind.isin(kinds) & data.stat.isin(stats_)]
    keys = ["cell", "group_by", "layer", "kind", "stat", "epoch"]
    for (cell, group_by, layer, kind, stat, epoch), part in part_all.groupby(keys):
        wide = part.pivot_table(index="run_id", columns="group_label", values="value", aggfunc="first")
        wide = wide.dropna()
        groups = list(wide.columns)
        n = len(wide)
        row = {
            "cell": cell,
            "group_by": group_by,
            "layer": layer,
            "kind": kind,
            "stat": stat,
            "epoch": epoch,
            "n_runs": n,
            "groups": " | ".join(groups),
            "test": "",
            "statistic": np.nan,
            "p": np.nan,
            "p_wilcoxon": np.nan,
            "mean_diff": np.nan,
            "higher": "",
        }
        if n < 2 or len(groups) < 2:
            rows.append(row)
            continue
        means = wide.mean()
        row["higher"] = str(means.idxmax())
        if len(groups) == 2:
            diff = (wide[groups[1]] - wide[groups[0]]).to_numpy()
            row["mean_diff"] = float(diff.mean())
            row["test"] = "paired t"
            if diff.std() == 0:  # no spread: t undefined (equal groups give p = 1)
                row["p"] = 1.0 if diff[0] == 0 else np.nan
            else:
                res = stats.ttest_1samp(diff, 0.0)
                row["statistic"], row["p"] = float(res.statistic), float(res.pvalue)
            if np.any(diff != 0):
                try:
                    row["p_wilcoxon"] = float(stats.wilcoxon(diff).pvalue)
                except ValueError:
                    pass
        else:
            row["test"] = "Friedman"
            row["mean_diff"] = float(means.max() - means.min())
            try:
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # all-tied blocks: the statistic is undefined (NaN)
                    res = stats.friedmanchisquare(*[wide[g].to_numpy() for g in groups])
                row["statistic"], row["p"] = float(res.statistic), float(res.pvalue)
            except ValueError:
                pass
        rows.append(row)
    tests = pd.DataFrame(
        rows,
        columns=[
            "cell",
            "group_by",
            "layer",
            "kind",
            "stat",
            "epoch",
            "n_runs",
            "groups",
            "test",
            "statistic",
            "p",
            "p_wilcoxon",
            "mean_diff",
            "higher",
        ],
    )
    tests["p_holm"] = np.nan
    for _, idx in tests.groupby("stat").groups.items():
        tests.loc[idx, "p_holm"] = holm(tests.loc[idx, "p"].to_numpy(dtype=float))
    tests["significant"] = tests.p_holm < 0.05
    return tests


def spectra_min_p(tested: pd.DataFrame) -> pd.DataFrame:
    """Per statistic (one Holm family): the smallest p its tests could reach with the fewest replicates tested."""
    from .power import min_p_row, min_p_table

    rows = []
    for stat, part in tested.groupby("stat"):
        n = int(part.n_runs.min())
        k = int(part.groups.str.count(r" \| ").max()) + 1
        rows.append(min_p_row(f"gradient {stat}", "signed_rank" if k == 2 else "friedman", n, len(part), k=k))
    return min_p_table(rows)


def _figure(summary: pd.DataFrame, panel: str, layers: list[str]):
    fig, axes = plt.subplots(len(layers), len(STATS), figsize=(9, 1.9 * len(layers) + 0.6), squeeze=False)
    for i, layer in enumerate(layers):
        for j, (stat, label) in enumerate(STATS.items()):
            ax = axes[i, j]
            part = summary[(summary.layer == layer) & (summary.stat == stat)]
            for k, (group, g) in enumerate(part.groupby("group_label", sort=True)):
                g = g.sort_values("epoch")
                color = "0.3" if group == "all" else f"C{k}"
                ax.plot(g.epoch, g["mean"], "--" if group == "all" else "-", color=color, label=group, lw=1.4)
                ax.fill_between(g.epoch, g.ci_low, g.ci_high, color=color, alpha=0.15, lw=0)
            ax.ticklabel_format(axis="y", useOffset=False, style="plain") if stat != "sv1" else None
            ax.set_title(f"{layer}: {label}", fontsize=9)
            ax.tick_params(labelsize=7)
            if stat == "sv1":
                ax.set_yscale("log")
            if i == len(layers) - 1:
                ax.set_xlabel("epoch", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), fontsize=8)
    fig.suptitle(f"{panel}", fontsize=10, x=0.02, ha="left")
    fig.subplots_adjust(
        left=0.08,
        right=0.98,
        top=1 - 0.55 / fig.get_figheight(),
        bottom=0.5 / fig.get_figheight() + 0.02,
        hspace=0.55,
        wspace=0.25,
    )
    return fig


def section(study_dir: Path, out_dir: Path) -> dict:
    study_dir = Path(study_dir)
    data, skipped = collect(study_dir)
    parts = []
    if data.empty:
        parts.append(
            para(
                f"No done run of {study_dir.name} has gradient spectra: run the study with "
                "probe.gradient_spectrum.enabled=true."
            )
        )
        parts.append(skipped_note(skipped))
        return {"title": TITLE, "html": section_html(TITLE, parts), "tables": {}}
    group_by = ", ".join(sorted(data.group_by.unique()))
    n_runs = data.run_id.nunique()
    parts.append(
        para(
            f"For every weight matrix (layer), the gradient of a fixed measured batch was split by {group_by}: "
            "each group's gradient is the part of the batch gradient that its samples contribute, and the group "
            "gradients add up to the batch gradient. The effective rank (exp of the entropy of the normalised "
            "singular values) says over how many directions a group's gradient is spread; the top singular value "
            f"says how strong its dominant direction is. {n_runs} runs; lines are the mean over runs and bands "
            "the 95% interval; the dashed line is the whole batch."
        )
    )
    summary = summarise(data[data.kind == "gradient"], ["panel", "layer", "stat", "group_label", "epoch"])
    for panel in sorted(summary.panel.unique()):
        layers = list(dict.fromkeys(data[data.panel == panel].layer))
        fig = _figure(summary[summary.panel == panel], panel, layers)
        parts.append(
            figure_html(
                save_figure(fig, out_dir, f"spectra_{panel}".replace("/", "_").replace(" ", "_")),
                f"{panel}: effective rank (left) and top singular value (right, log "
                "scale) of each group's gradient, per layer, over epochs; mean and 95% "
                "interval over runs.",
            )
        )
    tests = group_tests(data)
    tested = tests[tests.p.notna()]
    few = sorted(set(tests.cell) - set(tested.cell))
    parts.append(
        para(
            "Group difference per epoch: within each run the groups are paired; across the replicate runs of a "
            "design cell, a paired t-test of the difference (two groups; Wilcoxon signed-rank p beside it) or a "
            "Friedman test (more groups). Holm's correction over all epochs, layers and cells of each statistic. "
            f"{len(tested)} tests, {int(tested.significant.sum())} significant at 0.05 after correction."
        )
    )
    if few:
        parts.append(
            para(
                f"Not tested (fewer than 2 replicate runs with both groups): {len(few)} cells, "
                f"e.g. {', '.join(few[:5])}."
            )
        )
    if len(tested):
        overview = (
            tested.groupby(["cell", "layer", "stat"])
            .agg(
                epochs_tested=("epoch", "size"),
                epochs_significant=("significant", "sum"),
                min_p_holm=("p_holm", "min"),
                n_runs=("n_runs", "max"),
                higher_at_significant=(
                    "higher",
                    lambda h: ", ".join(sorted(set(h[tested.loc[h.index, "significant"]]))),
                ),
            )
            .reset_index()
        )
        parts.append(
            table_html(
                overview,
                "Per cell, layer and statistic: epochs where the groups differ "
                "(Holm-corrected p < 0.05) and which group is higher there.",
            )
        )
    floors = spectra_min_p(tested)
    if len(floors):
        parts.append(
            table_html(
                floors,
                "Smallest attainable p per family (each statistic is one Holm family): "
                "what the test could return at best with the replicates at hand "
                "(docs/companion_spectra_dense.md, the power rule).",
            )
        )
    parts.append(skipped_note(skipped))
    tables = {"group_tests": tests, "spectra_summary": summary, "spectra_min_p": floors}
    return {"title": TITLE, "html": section_html(TITLE, parts), "tables": tables}


def main(argv=None) -> int:
    return main_cli(
        argv,
        prog="python -m analysis.companion.spectra",
        stem="spectra",
        build=lambda root, study, out: section(root / (study or "headline"), out),
        default_study="headline",
    )


if __name__ == "__main__":
    sys.exit(main())

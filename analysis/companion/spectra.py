"""Report section: gradient spectra by group (effective rank, top singular value) per layer over training,
and whether the groups' gradients differ, tested across replicate runs (docs/companion_spectra_dense.md).

Baker, Calhoun & Plis compare the gradient spectra of clinical groups (diagnoses) of one data set. Runs
here have no clinical groups; what stands in for them is the grouping the gradient-spectrum probe was run
with (``probe.gradient_spectrum.group_by``): the two classes of a class pair in the headline study, the
distortion half (low / high) or the class in the dense-sample study.

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
    check_row,
    claim_row,
    claims_frame,
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
from .power import FRIEDMAN, ONE_SAMPLE, Family, holm, rule_table, sign_flip_p, standardised_mean

TABLE = "gradient_spectrum"
TITLE = "Gradient spectra by group"
STATS = {"effective_rank": "effective rank", "sv1": "top singular value"}
STAND_IN = {
    "class": "the two classes of the class pair (or the classes of the study)",
    "distortion": "low vs high distortion of the exemplars (split at the median)",
    "prediction": "the class the network predicts",
    "correct": "correctly vs incorrectly classified samples",
}
GROUP_TEST_COLUMNS = [
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
]


# ---------------------------------------------------------------------------
# read
# ---------------------------------------------------------------------------
def _group_label(group: str, group_by: str, class_names: list[str]) -> str:
    if group == "all" or group_by != "class" or not str(group).lstrip("-").isdigit():
        return str(group)
    k = int(group)
    if len(class_names) == 2 and k in (0, 1):
        return ("first", "second")[k] + " class of the pair"
    return class_names[k] if 0 <= k < len(class_names) else str(group)


def _run_frame(run: dict) -> pd.DataFrame:
    f = run[TABLE]
    design = run["design"]
    names = [str(n) for n in design.get("class_names") or []]
    keep = (f.stat == "effective_rank") | ((f.stat == "sv") & (f["index"] == 1)) | (f.stat == "frobenius")
    f = f[keep].copy()
    f["stat"] = np.where(f.stat == "sv", "sv1", f.stat)
    f["run_id"] = run["run_id"]
    # a design cell; real and shuffled labels are different conditions of the same cell
    cell = str(design.get("cell", ""))
    labels = design.get("labels")
    f["cell"] = f"{cell}, {labels} labels" if labels and cell else cell
    f["panel"] = str(design.get("data_source") or run["config"].get("study", {}).get("name", ""))
    f["replicate"] = int(design.get("replicate", 0))
    f["group_label"] = [_group_label(g, gb, names) for g, gb in zip(f.group, f.group_by)]
    f["pair_names"] = " | ".join(names) if len(names) == 2 else ""
    return f.drop(columns=[c for c in ("index",) if c in f])


def collect(study_dir: Path, where: dict | None = None) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The spectra of every done run of one condition, long format, with run identity and the epoch."""
    runs, skipped = done_runs(study_dir, (TABLE,), missing_note=" (probe off)", summary_required=False, where=where)
    if not runs:
        return pd.DataFrame(), skipped
    data = pd.concat([_run_frame(run) for run in runs], ignore_index=True)
    # a panel whose runs all share one class pair: name its classes rather than their order
    for _panel, part in data.groupby("panel"):
        pairs = part.pair_names.unique()
        if len(pairs) == 1 and pairs[0]:
            first, second = pairs[0].split(" | ")
            rename = {"first class of the pair": first, "second class of the pair": second}
            data.loc[part.index, "group_label"] = data.loc[part.index, "group_label"].replace(rename)
    return data.drop(columns="pair_names"), skipped


# ---------------------------------------------------------------------------
# test
# ---------------------------------------------------------------------------
def _compare_groups(wide: pd.DataFrame) -> dict:
    """Groups paired within runs (rows): two groups, a paired t test of the difference with the exact
    sign-flip p beside it; more, Friedman's test."""
    from scipy import stats

    groups = list(wide.columns)
    out = {"test": "", "statistic": np.nan, "p": np.nan, "p_wilcoxon": np.nan, "mean_diff": np.nan}
    out["higher"] = str(wide.mean().idxmax())
    if len(groups) == 2:
        diff = (wide[groups[1]] - wide[groups[0]]).to_numpy()
        out.update(test="paired t", mean_diff=float(diff.mean()), p_wilcoxon=sign_flip_p(diff))
        if diff.std() == 0:  # no spread: t undefined (equal groups give p = 1)
            out["p"] = 1.0 if diff[0] == 0 else np.nan
        else:
            res = stats.ttest_1samp(diff, 0.0)
            out.update(statistic=float(res.statistic), p=float(res.pvalue))
        return out
    means = wide.mean()
    out.update(test="Friedman", mean_diff=float(means.max() - means.min()))
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-tied blocks: the statistic is undefined (NaN)
            res = stats.friedmanchisquare(*[wide[g].to_numpy() for g in groups])
        out.update(statistic=float(res.statistic), p=float(res.pvalue))
    except ValueError:
        pass
    return out


def group_tests(data: pd.DataFrame, kinds=("gradient",), stats_=tuple(STATS)) -> pd.DataFrame:
    """Descriptive, per (cell, layer, kind, stat, epoch): the groups compared across the cell's replicate runs;
    Holm over every epoch, layer and cell of a statistic."""
    rows = []
    part_all = data[(data.group != "all") & data.kind.isin(kinds) & data.stat.isin(stats_)]
    keys = ["cell", "group_by", "layer", "kind", "stat", "epoch"]
    for key, part in part_all.groupby(keys):
        wide = part.pivot_table(index="run_id", columns="group_label", values="value", aggfunc="first").dropna()
        row = dict(zip(keys, key), n_runs=len(wide), groups=" | ".join(wide.columns))
        if len(wide) >= 2 and wide.shape[1] >= 2:
            row.update(_compare_groups(wide))
        rows.append(row)
    tests = pd.DataFrame(rows, columns=GROUP_TEST_COLUMNS)
    tests["p_holm"] = np.nan
    for _, idx in tests.groupby("stat").groups.items():
        tests.loc[idx, "p_holm"] = holm(tests.loc[idx, "p"].to_numpy(dtype=float))
    tests["significant"] = tests.p_holm < 0.05
    return tests


def _run_means(data: pd.DataFrame, stat: str) -> pd.DataFrame:
    part = data[(data.group != "all") & (data.kind == "gradient") & (data.stat == stat) & (data.epoch > 0)]
    return part.groupby(["cell", "layer", "run_id", "group_label"]).value.mean().reset_index()


def claim_tests(data: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """The claim's tests: per statistic, cell and layer, each run's group difference averaged over its measured
    epochs, across the cell's replicate runs (two groups: exact sign-flip test of the mean difference; more:
    Friedman); Holm over the cells and layers of a statistic. A layer where the statistic is the same number
    in every run and group (a rank-one gradient's effective rank is 1) is an identity of the network, listed
    as a check, not tested."""
    from scipy import stats

    rows, identities = [], []
    for stat in STATS:
        means = _run_means(data, stat)
        for (cell, layer), part in means.groupby(["cell", "layer"]):
            wide = part.pivot_table(index="run_id", columns="group_label", values="value").dropna()
            if wide.size and np.ptp(wide.to_numpy()) <= 1e-9 * max(1.0, float(np.abs(wide.to_numpy()).max())):
                identities.append({"stat": stat, "cell": cell, "layer": layer, "value": float(wide.to_numpy().flat[0])})
                continue
            row = {"stat": stat, "cell": cell, "layer": layer, "n_runs": len(wide), "groups": wide.shape[1]}
            if wide.shape[1] == 2 and len(wide) >= 1:
                diff = (wide.iloc[:, 1] - wide.iloc[:, 0]).to_numpy()
                row.update(test="exact sign-flip", p=sign_flip_p(diff), mean_diff=float(diff.mean()))
                row["d"] = standardised_mean(diff)
                row["higher"] = str(wide.columns[1] if diff.mean() > 0 else wide.columns[0])
            elif wide.shape[1] > 2 and len(wide) >= 2:
                res = stats.friedmanchisquare(*[wide[g].to_numpy() for g in wide.columns])
                row.update(test="Friedman", p=float(res.pvalue), mean_diff=float(np.ptp(wide.mean().to_numpy())))
                row["higher"] = str(wide.mean().idxmax())
            rows.append(row)
    columns = ["stat", "cell", "layer", "n_runs", "groups", "test", "p", "mean_diff", "d", "higher"]
    tests = pd.DataFrame(rows, columns=columns)
    tests["p_holm"] = np.nan
    for _, idx in tests.groupby("stat").groups.items():
        tests.loc[idx, "p_holm"] = holm(tests.loc[idx, "p"].to_numpy(dtype=float))
    return tests, identities


def families(tests: pd.DataFrame) -> dict[str, Family]:
    """Per statistic, the Holm family of the claim's tests and its replicate rule."""
    out = {}
    for stat, part in tests.groupby("stat"):
        k = int(part["groups"].max())
        out[stat] = Family(
            f"groups differ in gradient {STATS[stat]}",
            "exact sign-flip (2 groups) / Friedman, run means over epochs",
            ONE_SAMPLE if k == 2 else FRIEDMAN,
            "replicate run",
            int(part["n_runs"].min()),
            len(part),
            k=k,
            pilot_d=float(part["d"].abs().median()),  # the pilot effect of a family: the median of its tests'
        )
    return out


def spectra_claims(tests: pd.DataFrame, group_by: str) -> pd.DataFrame:
    rows = []
    fams = families(tests)
    for stat, label in STATS.items():
        part = tests[tests.stat == stat]
        family = fams.get(stat)
        significant = part[part.p_holm < 0.05]
        rows.append(
            claim_row(
                f"the groups' gradients differ in {label} (stand-in for Baker et al.'s clinical groups: "
                f"{STAND_IN.get(group_by, group_by)})",
                "per cell and layer, each run's group difference averaged over the measured epochs, across the "
                "cell's replicate runs (exact sign-flip; Friedman for more groups); Holm over cells x layers",
                family,
                holds=bool(len(significant)) if len(part) else None,
                p_holm=float(part.p_holm.min()) if len(part) else np.nan,
                numbers="; ".join(
                    f"{r.layer} ({r.cell}): {r.higher} higher, mean difference {r.mean_diff:+.3g}, Holm p {r.p_holm:.2g}"
                    for r in part.itertuples()
                ),
            )
        )
    return claims_frame(rows)


def spectra_min_p(tested: pd.DataFrame) -> pd.DataFrame:
    """Per statistic (one Holm family of the per-epoch tests): the smallest p its tests could reach with the
    fewest replicates tested, before and after Holm."""
    rows = []
    for stat, part in tested.groupby("stat"):
        k = int(part.groups.str.count(r" \| ").max()) + 1
        design = ONE_SAMPLE if k == 2 else FRIEDMAN
        words = "exact sign-flip / signed rank" if k == 2 else f"Friedman, {k} groups"
        rows.append(Family(f"gradient {stat}", words, design, "replicate run", int(part.n_runs.min()), len(part), k=k))
    return rule_table(rows)


# ---------------------------------------------------------------------------
# draw
# ---------------------------------------------------------------------------
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


def _figures(data: pd.DataFrame, out_dir: Path) -> tuple[list, pd.DataFrame]:
    summary = summarise(data[data.kind == "gradient"], ["panel", "layer", "stat", "group_label", "epoch"])
    parts = []
    for panel in sorted(summary.panel.unique()):
        layers = list(dict.fromkeys(data[data.panel == panel].layer))
        fig = _figure(summary[summary.panel == panel], panel, layers)
        parts.append(
            figure_html(
                save_figure(fig, out_dir, f"spectra_{panel}".replace("/", "_").replace(" ", "_")),
                f"{panel}: effective rank (left) and top singular value (right, log scale) of each group's "
                "gradient, per layer, over epochs; mean and 95% interval over runs.",
            )
        )
    return parts, summary


# ---------------------------------------------------------------------------
# page
# ---------------------------------------------------------------------------
def _intro(data: pd.DataFrame) -> str:
    group_by = ", ".join(sorted(data.group_by.unique()))
    stand_in = "; ".join(f"{g}: {STAND_IN.get(g, g)}" for g in sorted(data.group_by.unique()))
    return (
        f"For every weight matrix (layer), the gradient of a fixed measured batch was split by {group_by}: each "
        "group's gradient is the part of the batch gradient that its samples contribute, and the group gradients "
        "add up to the batch gradient. The effective rank (exp of the entropy of the normalised singular values) "
        "says over how many directions a group's gradient is spread; the top singular value says how strong its "
        f"dominant direction is. Baker et al. compare clinical groups (diagnoses); here the groups are {stand_in}. "
        f"{data.run_id.nunique()} runs; lines are the mean over runs and bands the 95% interval; the dashed line "
        "is the whole batch."
    )


def _per_epoch_parts(tests: pd.DataFrame) -> list:
    tested = tests[tests.p.notna()]
    parts = [
        para(
            "Descriptive, per epoch: within each run the groups are paired; across the replicate runs of a design "
            "cell, a paired t-test of the difference (two groups; exact sign-flip p beside it) or a Friedman test "
            "(more groups), Holm over every epoch, layer and cell of a statistic. "
            f"{len(tested)} tests, {int(tested.significant.sum())} significant at 0.05 after correction."
        )
    ]
    few = sorted(set(tests.cell) - set(tested.cell))
    if few:
        parts.append(
            para(
                f"Not tested (fewer than 2 replicate runs with both groups): {len(few)} cells, e.g. {', '.join(few[:5])}."
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
            )
            .reset_index()
        )
        parts.append(
            table_html(overview, "Per cell, layer and statistic: epochs where the groups differ (Holm p < 0.05).")
        )
    floors = spectra_min_p(tested)
    if len(floors):
        parts.append(table_html(floors, "The replicate rule of the per-epoch tests (one Holm family per statistic)."))
    return parts


def section(study_dir: Path, out_dir: Path, where: dict | None = None) -> dict:
    study_dir = Path(study_dir)
    data, skipped = collect(study_dir, where)
    if data.empty:
        text = f"No done run of {study_dir.name} has gradient spectra: run the study with probe.gradient_spectrum.enabled=true."
        return {"title": TITLE, "html": section_html(TITLE, [para(text), skipped_note(skipped)]), "tables": {}}
    tests, identities = claim_tests(data)
    claims = spectra_claims(tests, sorted(data.group_by.unique())[0])
    rule = rule_table(list(families(tests).values()))
    checks = [
        check_row(
            f"{i['layer']} ({i['cell']}): gradient {STATS[i['stat']]} is the same in every run and group",
            True,
            f"{i['value']:.6g}",
            "an identity of the layer (e.g. a rank-one gradient), not a finding: left out of the tests",
        )
        for i in identities
    ]
    parts = [table_html(claims, "Baker et al.'s claim as tested here, its test and the verdict."), para(_intro(data))]
    if len(rule):
        parts.append(
            table_html(rule, "The replicate rule of the claim's tests (docs/analysis.md, the replicate rule).")
        )
    if checks:
        parts.append(table_html(pd.DataFrame(checks), "Checks of the implementation: identities, not findings."))
    figures, summary = _figures(data, out_dir)
    parts += figures
    parts.append(table_html(tests, "The claim's tests, per statistic, cell and layer."))
    per_epoch = group_tests(data)
    parts += _per_epoch_parts(per_epoch)
    parts.append(skipped_note(skipped))
    tables = {
        "spectra_claims": claims,
        "spectra_claim_tests": tests,
        "spectra_rule": rule,
        "group_tests": per_epoch,
        "spectra_summary": summary,
        "spectra_min_p": spectra_min_p(per_epoch[per_epoch.p.notna()]),
    }
    return {"title": TITLE, "html": section_html(TITLE, parts), "tables": tables}


def main(argv=None) -> int:
    return main_cli(
        argv,
        prog="python -m analysis.companion.spectra",
        stem="spectra",
        build=lambda root, study, out, where: section(root / (study or "headline"), out, where),
        default_study="headline",
    )


if __name__ == "__main__":
    sys.exit(main())

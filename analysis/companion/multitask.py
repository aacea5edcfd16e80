"""Report section: the multitasking network's pseudo-kernel (one-step prediction, eigenvector structure,
kernel-to-loss prediction) and standard vs large initialisation (docs/companion_critical_multitask.md).

CLI: ``python -m analysis.companion.multitask --root OUTPUTS --out DIR`` (multitask.html and CSV tables).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .common import (
    done_runs,
    figure_html,
    main_cli,
    mean_ci,
    para,
    save_figure,
    section_html,
    skipped_note,
    summarise,
    table_html,
)

TITLE = "Pseudo-kernel prediction and multitasking (standard vs large initialisation)"
STUDY = "multitask"
TABLES = ("loss_curves", "kernel_prediction", "kernel_eigen", "representation_sharing")
CORR_THRESHOLD = 0.999
INITS = ("standard", "large")
MEASURES = {
    "single_task_test_loss": "single-task test loss after single-task training",
    "single_task_test_loss_mean_over_training": "single-task test loss, mean over single-task training",
    "single_task_test_loss_after_finetune": "single-task test loss after fine-tuning",
    "multitask_test_loss_before_finetune": "concurrent-multitask test loss before fine-tuning",
    "multitask_test_loss": "concurrent-multitask test loss after fine-tuning",
}


def _target_of(label: str) -> str:
    """``in2>out1`` -> ``out1`` (the output group a single task writes to)."""
    return "+".join(part.split(">")[1] for part in str(label).split("+"))


def per_run(runs: list[dict]) -> pd.DataFrame:
    rows = []
    for run in runs:
        s = run["summary"]
        row = {"run_id": run["run_id"], "replicate": int(run["design"]["replicate"]), "init": s["init"]}
        row.update({k: float(s[k]) for k in MEASURES if k in s})
        for stage, values in (s.get("kernel") or {}).items():
            row[f"kernel_corr_{stage}"] = float(values["prediction_corr"])
            row[f"onestep_corr_training_lr_{stage}"] = float(values.get("prediction_corr_training_lr", math.nan))
            top = np.asarray(values.get("top_singular_values") or [math.nan], dtype=float)
            row[f"kernel_top1_share_{stage}"] = float(top[0] / top.sum()) if top.sum() > 0 else math.nan
            purity = np.asarray(values.get("task_purity") or [math.nan], dtype=float)
            row[f"task_purity_{stage}"] = float(np.mean(purity))
            for label in ("task", "input_group", "output_group", "target_units"):
                row[f"ari_{label}_{stage}"] = float(values.get(f"cluster_ari_{label}", math.nan))
            for key, value in (values.get("output_group_mean") or {}).items():
                row[f"out_{key}_{stage}"] = float(value)
        for key in ("sharing_same_input_after_single", "sharing_other_input_after_single"):
            row[key] = float(s.get(key, math.nan))
        rows.append(row)
    return pd.DataFrame(rows)


# Pyle et al.'s reading: the kernel of each output group, eigen-decomposed over the training samples
# (pipeline/studies/multitask/runner.py, output_group_structure); each measure is the mean over groups
PER_OUTPUT = "per output group"
STACKED = "all outputs stacked"
STRUCTURE = {
    "out_own_output_share_init": (PER_OUTPUT, "top eigenvector's share on the group's own tasks"),
    "out_task_purity_init": (PER_OUTPUT, "top eigenvector's largest share on one task"),
    "out_ari_task_init": (PER_OUTPUT, "k-means clusters of the top eigenvectors match the tasks (ARI)"),
    "out_top1_share_init": (PER_OUTPUT, "top eigenvalue's share of the kernel"),
    "out_effective_rank_init": (PER_OUTPUT, "effective rank of the kernel (participation ratio)"),
    "ari_task_init": (STACKED, "k-means clusters of the top eigenvectors match the tasks (ARI)"),
    "ari_target_units_init": (STACKED, "... match the target output units (ARI)"),
    "ari_input_group_init": (STACKED, "... match the input groups (ARI)"),
    "ari_output_group_init": (STACKED, "... match the output groups (ARI)"),
    "task_purity_init": (STACKED, "mean task purity of the top eigenvectors"),
    "kernel_top1_share_init": (STACKED, "top singular value's share of the top components"),
}
LOSSES = {
    "single_task_test_loss": "single-task test loss after single-task training",
    "multitask_test_loss": "concurrent-multitask test loss after fine-tuning",
}


def kernel_to_loss(frame: pd.DataFrame) -> pd.DataFrame:
    """Pyle et al.'s prediction from the kernel at initialisation: Spearman correlation across runs (both
    inits pooled, and within each init) of each structure measure with each downstream loss; Holm over the
    tests of one scope and one reading of the kernel (per output group, or all outputs stacked)."""
    from .power import holm, spearman

    rows = []
    for scope in ("all runs", *INITS):
        part = frame if scope == "all runs" else frame[frame.init == scope]
        for key, (reading, label) in STRUCTURE.items():
            for loss, loss_label in LOSSES.items():
                if key not in part or loss not in part:
                    continue
                ok = part[[key, loss]].dropna()
                rho = p = math.nan
                if len(ok) >= 3 and ok[key].nunique() > 1 and ok[loss].nunique() > 1:
                    rho, p = spearman(ok[key], ok[loss])
                rows.append(
                    {
                        "runs": scope,
                        "kernel": reading,
                        "kernel_structure_at_init": label,
                        "key": key,
                        "loss": loss_label,
                        "n": len(ok),
                        "spearman_rho": rho,
                        "p": p,
                    }
                )
    columns = ["runs", "kernel", "kernel_structure_at_init", "key", "loss", "n", "spearman_rho", "p"]
    out = pd.DataFrame(rows, columns=columns)
    out["p_holm"] = np.nan
    for _, index in out.groupby(["runs", "kernel"]).groups.items():  # one Holm family per scope and reading
        out.loc[index, "p_holm"] = holm(out.loc[index, "p"])
    return out


OUTPUT_COLUMNS = {
    "top1_share": "top eigenvalue share",
    "effective_rank": "effective rank",
    "own_output_share": "own-output share",
    "own_output_chance": "own-output share, chance",
    "task_purity": "task purity",
    "ari_task": "ARI task",
}


def per_output_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per init and stage: the per-output-group kernel measures, mean [95% interval] over runs."""
    rows = []
    for init in INITS:
        sub = frame[frame.init == init]
        for stage in ("init",):  # measured at initialisation (the kernel Pyle et al. predict from)
            columns = {label: f"out_{key}_{stage}" for key, label in OUTPUT_COLUMNS.items()}
            if not len(sub) or not all(c in sub for c in columns.values()):
                continue
            row = {"init": init, "stage": stage, "runs": len(sub)}
            for label, column in columns.items():
                m, lo, hi, _ = mean_ci(sub[column])
                row[label] = f"{m:.3g} [{lo:.3g}, {hi:.3g}]"
            rows.append(row)
    return pd.DataFrame(rows)


def init_comparison(frame: pd.DataFrame) -> pd.DataFrame:
    """Standard vs large, paired by replicate, for every measure."""
    from scipy import stats

    rows = []
    wide = {init: frame[frame.init == init].set_index("replicate") for init in INITS}
    common = wide["standard"].index.intersection(wide["large"].index)
    for key, label in MEASURES.items():
        if key not in frame:
            continue
        std, large = wide["standard"].loc[common, key], wide["large"].loc[common, key]
        diff = (large - std).to_numpy()
        t_p = w_p = math.nan
        if len(common) >= 2 and np.std(diff) > 0:
            t_p = float(stats.ttest_rel(large, std).pvalue)
            try:
                w_p = float(stats.wilcoxon(diff).pvalue)
            except ValueError:
                pass
        m_s, lo_s, hi_s, _ = mean_ci(std)
        m_l, lo_l, hi_l, _ = mean_ci(large)
        rows.append(
            {
                "measure": label,
                "key": key,
                "n_pairs": len(common),
                "standard_mean": m_s,
                "standard_ci": f"{lo_s:.3g}..{hi_s:.3g}",
                "large_mean": m_l,
                "large_ci": f"{lo_l:.3g}..{hi_l:.3g}",
                "lower": ("standard" if m_s < m_l else "large") if len(common) else "",
                "pairs_where_standard_lower": int((diff > 0).sum()),
                "paired_t_p": t_p,
                "wilcoxon_p": w_p,
            }
        )
    return pd.DataFrame(rows)


def multitask_min_p(comparison: pd.DataFrame) -> pd.DataFrame:
    from .power import min_p_row, min_p_table

    tested = comparison[comparison.key.isin(VERDICT_KEYS)]
    if not len(tested):
        return min_p_table([])
    return min_p_table(
        [min_p_row("standard vs large init, the paper's claims", "signed_rank", int(tested.n_pairs.min()), len(tested))]
    )


VERDICT_KEYS = ("single_task_test_loss", "single_task_test_loss_after_finetune", "multitask_test_loss")


def verdicts(comparison: pd.DataFrame) -> list[dict]:
    """The paper's claims as found here; the paired t p values are Holm-corrected over the claims."""
    from .power import holm

    out = []
    tested = comparison[comparison.key.isin(VERDICT_KEYS)]
    holm_of = dict(zip(tested.key, holm(tested.paired_t_p))) if len(tested) else {}

    def row(key):
        part = comparison[comparison.key == key]
        return part.iloc[0] if len(part) else None

    for key, claim, expect in (
        (
            "single_task_test_loss",
            "standard init gives lower single-task test loss (after single-task training)",
            "standard",
        ),
        (
            "single_task_test_loss_after_finetune",
            "standard init gives lower single-task test loss (after fine-tuning)",
            "standard",
        ),
        ("multitask_test_loss", "large init gives lower concurrent-multitask loss after fine-tuning", "large"),
    ):
        r = row(key)
        if r is None or not r.n_pairs:
            out.append({"finding (Pyle et al.)": claim, "found here": "not measured", "numbers": ""})
            continue
        p = float(holm_of.get(key, math.nan))
        significant = bool(np.isfinite(p) and p < 0.05)
        agrees = r.lower == expect
        found = (
            "yes"
            if agrees and significant
            else "same direction, not significant"
            if agrees
            else "NO: the opposite (significant)"
            if significant
            else "no (opposite direction, not significant)"
        )
        out.append(
            {
                "finding (Pyle et al.)": claim,
                "found here": found,
                "numbers": f"standard {r.standard_mean:.4g} vs large {r.large_mean:.4g} "
                f"({r.n_pairs} paired replicates, paired t p={r.paired_t_p:.2g}, "
                f"Holm over the {len(holm_of)} claims {p:.2g})",
            }
        )
    return out


def section(study_dir: Path, out_dir: Path) -> dict:
    study_dir = Path(study_dir)
    runs, skipped = done_runs(study_dir, TABLES)
    parts = []
    if not runs:
        parts += [
            para(
                f"No done run of {study_dir.name} was found (python -m pipeline -m study=multitask 'seed=range(0,30)')."
            ),
            skipped_note(skipped),
        ]
        return {"title": TITLE, "html": section_html(TITLE, parts), "tables": {}}
    frame = per_run(runs)
    s0 = runs[0]["summary"]
    parts.append(
        para(
            "The multitasking network (4 input groups x 3 features, 12 tasks = input group x output group, 3 "
            "output groups x 3 units, 200 sigmoid hidden units with a fixed bias of -2) learns the 12 single tasks "
            f"({s0.get('single_epochs')} epochs), then is fine-tuned on concurrent multitasking (1-3 tasks at once; "
            f"{s0.get('finetune_epochs')} epochs). Test losses use stimuli never trained on. The pseudo-kernel "
            "K(x, x_n) = <grad loss(x_n), grad f_k(x)> is computed from the weights before each phase and that "
            f"phase's training set. {len(runs)} runs ({', '.join(f'{(frame.init == i).sum()} {i}' for i in INITS)})."
        )
    )

    # kernel prediction
    corr = frame[[c for c in frame.columns if c.startswith("kernel_corr_")]]
    worst = float(np.nanmin(corr.to_numpy())) if corr.size else math.nan
    checks = [
        {
            "check": f"the one-step kernel prediction correlates with the real change above {CORR_THRESHOLD} "
            "at a small learning rate",
            "result": "holds" if worst > CORR_THRESHOLD else "does NOT hold",
            "measured": f"lowest correlation over {len(frame)} runs and stages: {worst:.6f} "
            f"(probe lr {s0.get('kernel', {}).get('init', {}).get('probe_lr')})",
        }
    ]
    onestep = frame[[c for c in frame.columns if c.startswith("onestep_corr_training_lr_")]]
    if onestep.size and np.isfinite(onestep.to_numpy()).any():
        by_init = {i: float(np.nanmin(onestep[frame.init == i].to_numpy())) for i in INITS if (frame.init == i).any()}
        checks.append(
            {
                "check": "the same one-step prediction at the training step size (how far a real training "
                "step is from the kernel's linearisation)",
                "result": "holds" if min(by_init.values()) > CORR_THRESHOLD else "does NOT hold",
                "measured": "lowest correlation: "
                + ", ".join(f"{i} {v:.4f}" for i, v in by_init.items())
                + " (training lr "
                + ", ".join(
                    f"{i} {lr}" for i, lr in sorted({(r["summary"]["init"], r["summary"].get("lr")) for r in runs})
                )
                + "; per run in summary.json)",
            }
        )
    comparison = init_comparison(frame)
    verdict = verdicts(comparison)
    k2l = kernel_to_loss(frame)
    # the verdict reads the per-output kernels (Pyle et al.'s method); runs recorded before they were
    # measured fall back to the stacked kernel
    reading = (
        PER_OUTPUT if (k2l.kernel == PER_OUTPUT).any() and k2l[k2l.kernel == PER_OUTPUT].p.notna().any() else STACKED
    )
    k2l_read = k2l[k2l.kernel == reading]
    pooled = k2l_read[(k2l_read.runs == "all runs") & k2l_read.p_holm.notna()]
    for loss_label in LOSSES.values():
        part = pooled[pooled.loss == loss_label]
        if not len(part):
            verdict.append(
                {
                    "finding (Pyle et al.)": f"the kernel's structure at init predicts the {loss_label}",
                    "found here": "not measured",
                    "numbers": "",
                }
            )
            continue
        best = part.loc[part.spearman_rho.abs().idxmax()]
        within = k2l_read[(k2l_read.runs != "all runs") & (k2l_read.loss == loss_label) & (k2l_read.p_holm < 0.05)]
        found = (
            "no (not significant after Holm)"
            if not best.p_holm < 0.05
            else "yes, across and within inits"
            if len(within)
            else "across inits only: the structure tells the inits apart, not the runs within an init"
        )
        verdict.append(
            {
                "finding (Pyle et al.)": f"the kernel's structure at init predicts the {loss_label}",
                "found here": found,
                "numbers": f"kernel {reading}; strongest: {best.kernel_structure_at_init}, "
                f"Spearman rho {best.spearman_rho:.2f} "
                f"over {int(best.n)} runs (both inits pooled, so the init's own effect "
                f"counts; within-init rows in the table), Holm p {best.p_holm:.2g}",
            }
        )
    protocol = (
        f"Protocol ({Path(study_dir).name}): batch {s0.get('batch_size')}, "
        f"loss {s0.get('loss_reduction', 'mean')}"
        f" over samples, learning rate "
        + ", ".join(
            f"{i} {frame_lr}" for i, frame_lr in sorted({(r["summary"]["init"], r["summary"].get("lr")) for r in runs})
        )
        + f", training samples per phase {s0.get('n_train', '')}."
    )
    parts.insert(
        0,
        table_html(
            pd.DataFrame(verdict),
            "Pyle et al.'s claims, our test of each, and the verdict "
            "(paired by replicate; Holm over the claims of each kind).",
        ),
    )
    parts.insert(1, para(protocol))
    parts.append(table_html(pd.DataFrame(checks), "Check: kernel prediction."))
    parts.append(
        table_html(
            k2l.drop(columns=["key"]),
            "The kernel-to-loss prediction: each measure of the "
            "kernel's structure at initialisation against the downstream "
            "losses across runs (Spearman, exact p for <= 8 runs; Holm within each "
            "scope (pooled, each init) and each reading of the kernel: per output group, "
            "as Pyle et al. read it, or all outputs stacked).",
        )
    )
    floors = multitask_min_p(comparison)
    if len(floors):
        parts.append(
            table_html(
                floors,
                "Smallest attainable p of the claims' family with the replicates at hand "
                "(the power rule of docs/companion_critical_multitask.md).",
            )
        )
    inits_present = [i for i in INITS if (frame.init == i).any()]
    fig, axes = plt.subplots(1, len(inits_present), figsize=(4.2 * len(inits_present), 3.6), squeeze=False)
    for ax, init in zip(axes[0], inits_present):
        run = next(r for r in runs if r["summary"]["init"] == init)
        kp = run["kernel_prediction"]
        kp = kp[kp.stage == "init"]
        ax.scatter(kp.actual, kp.predicted, s=4, alpha=0.5)
        lim = [min(kp.actual.min(), kp.predicted.min()), max(kp.actual.max(), kp.predicted.max())]
        ax.plot(lim, lim, color="grey", lw=0.8)
        r = np.corrcoef(kp.actual, kp.predicted)[0, 1]
        ax.set(title=f"{init} init (r = {r:.6f})", xlabel="real change of f_k(x)", ylabel="kernel prediction")
    uri = save_figure(fig, out_dir, "multitask_kernel_prediction")
    parts.append(
        figure_html(
            uri,
            "Kernel-predicted against real change of every output unit on held-out "
            "single-task inputs after one full-batch step at the probe learning rate, "
            "computed at initialisation from the single-task curriculum (one run per "
            "init). Points on the diagonal: the kernel predicts the change exactly.",
        )
    )

    # eigenvector clusters
    stage_rows = []
    fig, axes = plt.subplots(
        len(inits_present),
        2,
        figsize=(11, 3.6 * len(inits_present)),
        squeeze=False,
        gridspec_kw={"width_ratios": [12, 9]},
        constrained_layout=True,
    )
    for row_axes, init in zip(axes, inits_present):
        run = min((r for r in runs if r["summary"]["init"] == init), key=lambda r: int(r["design"]["replicate"]))
        eig = run["kernel_eigen"]
        eig = eig[eig.stage == "init"].assign(e=lambda f: f.loading**2)
        eig = eig.assign(
            target=eig.target_units.astype(str) if "target_units" in eig else [_target_of(label) for label in eig.label]
        )
        for ax, by, name in ((row_axes[0], "label", "task"), (row_axes[1], "target", "target output unit (1-9)")):
            energy = eig.groupby(["component", by]).e.sum().unstack(by)
            image = ax.imshow(energy.to_numpy(), aspect="auto", cmap="magma", vmin=0)
            ax.set_yticks(range(len(energy.index)), [str(c) for c in energy.index], fontsize=7)
            ax.set_xticks(range(len(energy.columns)), list(energy.columns), rotation=90, fontsize=6)
            ax.set(title=f"{init} init: weight by {name}", ylabel="eigenvector (by eigenvalue)")
            fig.colorbar(image, ax=ax, fraction=0.04)
        for stage in ("init", "finetune"):
            sub = frame[frame.init == init]
            row: dict[str, Any] = {"init": init, "stage": stage}
            for label in ("task", "input_group", "output_group", "target_units"):
                col = f"ari_{label}_{stage}"
                if col in sub:
                    row[f"ARI {label.replace('_', ' ')}"] = mean_ci(sub[col])[0]
            stage_rows.append(row)
    uri = save_figure(fig, out_dir, "multitask_kernel_eigenvectors")
    parts.append(
        figure_html(
            uri,
            "Top eigenvectors of the kernel at initialisation (rows, largest first; replicate "
            "0 of each init) and how their weight (squared loadings over the training "
            "samples) splits over the 12 single tasks (left, 'in i>out o') and over the "
            "output unit the sample's target turns on (right, output group x feature). A "
            "row lit in one column is a direction specific to that task or unit.",
        )
    )
    ari = pd.DataFrame(stage_rows)
    parts.append(
        table_html(
            ari,
            "Clustering of the training samples in the space of the top kernel eigenvectors "
            "(k-means with as many clusters as labels): adjusted Rand index against each "
            "labelling (1 = the clusters are exactly that grouping, 0 = chance), mean over "
            "runs. Stage init: single-task curriculum at initialisation; finetune: the "
            "multitasking curriculum after single-task training.",
        )
    )
    per_output = per_output_table(frame)
    if len(per_output):
        parts.append(
            table_html(
                per_output,
                "The kernel of each output group (its 3 output units), eigen-decomposed over the training "
                "samples, as Pyle et al. read it; mean over the 3 groups, then mean and 95% interval over runs. "
                "own-output share: the top eigenvector's weight on samples whose tasks write to the group "
                "(chance: its share of samples); task purity: its largest weight on one task (set).",
            )
        )

    # init comparison: curves and the table
    curves = pd.concat([r["loss_curves"].assign(init=r["summary"]["init"], run_id=r["run_id"]) for r in runs])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, split, title in (
        (axes[0], "single_test", "single-task test loss"),
        (axes[1], "multi_test", "concurrent-multitask test loss"),
    ):
        for init, colour in zip(INITS, ("tab:blue", "tab:red")):
            part = curves[(curves.init == init) & (curves.split == split) & (curves.epoch >= 1)]
            if not len(part):
                continue
            summ = summarise(part, ["epoch"], "loss")
            ax.plot(summ.epoch, summ["mean"], color=colour, label=init)
            ax.fill_between(summ.epoch, summ.ci_low, summ.ci_high, color=colour, alpha=0.2)
        switch = curves[curves.phase == "single"].epoch.max()
        if np.isfinite(switch):
            ax.axvline(switch, color="grey", ls=":")
        ax.set(yscale="log", xlabel="epoch (dotted: start of fine-tuning)", title=title)
        ax.legend(fontsize=8)
    uri = save_figure(fig, out_dir, "multitask_loss_curves")
    parts.append(
        figure_html(
            uri,
            "Test losses over training, mean and 95% interval over replicates, per "
            "initialisation: single-task training, then fine-tuning on concurrent "
            "multitasking.",
        )
    )
    parts.append(
        table_html(
            comparison.drop(columns=["key"]),
            "Standard vs large initialisation, paired by replicate (paired t-test and Wilcoxon signed-rank).",
        )
    )
    share = pd.concat([r["representation_sharing"].assign(init=r["summary"]["init"], run_id=r["run_id"]) for r in runs])
    share = share.assign(pair=np.where(share.same_input, "same input group", "different input group"))
    share_runs = share.groupby(["init", "stage", "pair", "run_id"]).similarity.mean().reset_index()
    share_summary = summarise(share_runs, ["init", "stage", "pair"], "similarity")
    parts.append(
        table_html(
            share_summary,
            "Overlap of the single tasks' hidden representations (cosine of the "
            "centred hidden patterns of the same stimuli) for task pairs that read "
            "the same input group vs different ones; high overlap for different "
            "input groups means shared representations, which interfere when the "
            "tasks run at once.",
        )
    )
    parts.append(skipped_note(skipped))
    tables = {
        "runs": frame,
        "init_comparison": comparison,
        "verdicts": pd.DataFrame(verdict),
        "kernel_clusters": ari,
        "representation_sharing": share_summary,
        "checks": pd.DataFrame(checks),
        "min_p": floors,
        "kernel_to_loss": k2l,
    }
    if len(per_output):
        tables["kernel_per_output"] = per_output
    return {"title": TITLE, "html": section_html(TITLE, parts), "tables": tables}


def main(argv=None) -> int:
    return main_cli(
        argv,
        prog="python -m analysis.companion.multitask",
        stem="multitask",
        build=lambda root, study, out: section(root / (study or STUDY), out),
        default_study=STUDY,
    )


if __name__ == "__main__":
    sys.exit(main())

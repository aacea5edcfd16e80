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
    check_row,
    claim_row,
    claims_frame,
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
from .power import CORRELATION, ONE_SAMPLE, Family, holm, rule_table, shown_effect, sign_flip_p, standardised_mean

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
    from .power import spearman

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
    """Standard vs large, paired by replicate, for every measure: the exact sign-flip test of the paired
    difference (the test the verdicts use), the paired t test and Wilcoxon's beside it."""
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
                "d": standardised_mean(diff),
                "sign_flip_p": sign_flip_p(diff) if len(common) else math.nan,
                "paired_t_p": t_p,
                "wilcoxon_p": w_p,
            }
        )
    return pd.DataFrame(rows)


VERDICT_KEYS = ("single_task_test_loss", "single_task_test_loss_after_finetune", "multitask_test_loss")
INIT_CLAIMS = (
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
)


def init_family(comparison: pd.DataFrame) -> Family | None:
    tested = comparison[comparison.key.isin(VERDICT_KEYS)] if len(comparison) else comparison
    if not len(tested):
        return None
    return Family(
        "standard vs large init, the paper's claims",
        "exact sign-flip of the paired difference",
        ONE_SAMPLE,
        "replicate pair",
        int(tested.n_pairs.min()),
        len(tested),
        pilot_d=float(tested.d.abs().median()),  # the pilot effect of a family: the median of its tests'
    )


def init_claims(comparison: pd.DataFrame) -> list[dict]:
    """Pyle et al.'s claims on the inits; exact sign-flip p Holm-corrected over the claims."""
    family = init_family(comparison)
    tested = comparison[comparison.key.isin(VERDICT_KEYS)] if len(comparison) else comparison
    holm_of = dict(zip(tested.key, holm(tested.sign_flip_p))) if len(tested) else {}
    expected = {key: expect for key, _, expect in INIT_CLAIMS}
    shown = shown_effect(
        tested.d, [holm_of[k] < 0.05 and low == expected.get(k) for k, low in zip(tested.key, tested.lower)]
    )
    out = []
    for key, claim, expect in INIT_CLAIMS:
        part = comparison[comparison.key == key] if len(comparison) else comparison
        r = part.iloc[0] if len(part) else None
        test = "paired by replicate, exact sign-flip test of large - standard, Holm over the 3 claims"
        if r is None or not r.n_pairs:
            out.append(claim_row(claim, test, family, holds=None))
            continue
        p = float(holm_of.get(key, math.nan))
        significant = bool(np.isfinite(p) and p < 0.05)
        direction = "the same direction" if r.lower == expect else "the opposite direction"
        out.append(
            claim_row(
                claim,
                test,
                family,
                holds=significant and r.lower == expect,
                p_holm=p,
                claimed_way=r.lower == expect,
                shown_d=shown,
                numbers=f"standard {r.standard_mean:.4g} vs large {r.large_mean:.4g}, {direction}"
                + (" (significant)" if significant else "")
                + f"; {r.n_pairs} pairs, {r.pairs_where_standard_lower} with standard lower; exact p {r.sign_flip_p:.2g}, "
                f"paired t p {r.paired_t_p:.2g}",
            )
        )
    return out


def kernel_claims(k2l: pd.DataFrame) -> list[dict]:
    """Pyle et al.'s prediction from the kernel at init, one claim per downstream loss (per-output kernels, or
    the stacked kernel for runs recorded before they existed)."""
    reading = (
        PER_OUTPUT if (k2l.kernel == PER_OUTPUT).any() and k2l[k2l.kernel == PER_OUTPUT].p.notna().any() else STACKED
    )
    read = k2l[k2l.kernel == reading]
    pooled = read[(read.runs == "all runs") & read.p_holm.notna()]
    out = []
    for loss_label in LOSSES.values():
        claim = f"the kernel's structure at init predicts the {loss_label}"
        test = f"Spearman across runs of each structure measure ({reading}) with the loss; Holm within the scope"
        part = pooled[pooled.loss == loss_label]
        if not len(part):
            out.append(claim_row(claim, test, None, holds=None))
            continue
        best = part.loc[part.spearman_rho.abs().idxmax()]
        family = Family(claim, "Spearman (exact for <= 8 runs)", CORRELATION, "run", int(best.n), len(part))
        within = read[(read.runs != "all runs") & (read.loss == loss_label) & (read.p_holm < 0.05)]
        scope = (
            "across and within inits"
            if len(within)
            else "across inits only: the structure tells the inits apart, not the runs within an init"
        )
        out.append(
            claim_row(
                claim,
                test,
                family,
                holds=bool(best.p_holm < 0.05),
                p_holm=float(best.p_holm),
                numbers=f"strongest: {best.kernel_structure_at_init}, rho {best.spearman_rho:.2f} over {int(best.n)} "
                f"runs (both inits pooled)" + (f"; {scope}" if best.p_holm < 0.05 else ""),
            )
        )
    return out


# ---------------------------------------------------------------------------
# checks of the implementation
# ---------------------------------------------------------------------------
def _mean_loss_step(summary: dict, stage: str, step: float) -> float:
    """The step a full-batch step of ``step`` on the run's loss makes on the mean loss over the samples."""
    kernel = (summary.get("kernel") or {}).get(stage) or {}
    if summary.get("loss_reduction", "mean") == "sum":
        return float(step) * float(kernel.get("n_train") or 1)
    return float(step)


def kernel_checks(frame: pd.DataFrame, runs: list[dict]) -> list[dict]:
    """The one-step prediction is a first-order expansion: at a small step it must match the real change (a
    check of the implementation, not a finding); at the training step it says how far a real step departs."""
    s0 = runs[0]["summary"]
    probe = float((s0.get("kernel") or {}).get("init", {}).get("probe_lr", math.nan))
    steps = sorted({_mean_loss_step(r["summary"], "init", probe) for r in runs})
    corr = frame[[c for c in frame.columns if c.startswith("kernel_corr_")]]
    worst = float(np.nanmin(corr.to_numpy())) if corr.size else math.nan
    checks = [
        check_row(
            "the one-step kernel prediction matches the real change at a small step (a first-order expansion)",
            worst > CORR_THRESHOLD,
            f"lowest correlation over {len(frame)} runs and stages: {worst:.6f}; probe step {probe:g} on the "
            f"{s0.get('loss_reduction', 'mean')} loss = " + ", ".join(f"{v:g}" for v in steps) + " on the mean loss",
            f"correlation > {CORR_THRESHOLD} at a mean-loss step of about 0.001",
        )
    ]
    onestep = frame[[c for c in frame.columns if c.startswith("onestep_corr_training_lr_")]]
    if onestep.size and np.isfinite(onestep.to_numpy()).any():
        by_init = {i: float(np.nanmin(onestep[frame.init == i].to_numpy())) for i in INITS if (frame.init == i).any()}
        lrs = sorted({(r["summary"]["init"], r["summary"].get("lr")) for r in runs})
        checks.append(
            check_row(
                "the same one-step prediction at the training step size (how far a real training step is from the "
                "kernel's linearisation)",
                min(by_init.values()) > CORR_THRESHOLD,
                "lowest correlation: "
                + ", ".join(f"{i} {v:.4f}" for i, v in by_init.items())
                + " (training lr "
                + ", ".join(f"{i} {lr}" for i, lr in lrs)
                + ")",
                f"correlation > {CORR_THRESHOLD}",
            )
        )
    return checks


def multitask_min_p(comparison: pd.DataFrame) -> pd.DataFrame:
    family = init_family(comparison)
    return rule_table([family] if family is not None else [])


# ---------------------------------------------------------------------------
# draw
# ---------------------------------------------------------------------------
def _prediction_figure(runs: list[dict], inits: list[str], out_dir: Path) -> str:
    fig, axes = plt.subplots(1, len(inits), figsize=(4.2 * len(inits), 3.6), squeeze=False)
    for ax, init in zip(axes[0], inits):
        run = next(r for r in runs if r["summary"]["init"] == init)
        kp = run["kernel_prediction"]
        kp = kp[kp.stage == "init"]
        ax.scatter(kp.actual, kp.predicted, s=4, alpha=0.5)
        lim = [min(kp.actual.min(), kp.predicted.min()), max(kp.actual.max(), kp.predicted.max())]
        ax.plot(lim, lim, color="grey", lw=0.8)
        r = np.corrcoef(kp.actual, kp.predicted)[0, 1]
        ax.set(title=f"{init} init (r = {r:.6f})", xlabel="real change of f_k(x)", ylabel="kernel prediction")
    return save_figure(fig, out_dir, "multitask_kernel_prediction")


def _eigen_energy(run: dict) -> pd.DataFrame:
    eig = run["kernel_eigen"]
    eig = eig[eig.stage == "init"].assign(e=lambda f: f.loading**2)
    target = eig.target_units.astype(str) if "target_units" in eig else [_target_of(label) for label in eig.label]
    return eig.assign(target=target)


def _eigen_figure(runs: list[dict], inits: list[str], out_dir: Path) -> str:
    fig, axes = plt.subplots(
        len(inits),
        2,
        figsize=(11, 3.6 * len(inits)),
        squeeze=False,
        gridspec_kw={"width_ratios": [12, 9]},
        constrained_layout=True,
    )
    for row_axes, init in zip(axes, inits):
        run = min((r for r in runs if r["summary"]["init"] == init), key=lambda r: int(r["design"]["replicate"]))
        eig = _eigen_energy(run)
        for ax, by, name in ((row_axes[0], "label", "task"), (row_axes[1], "target", "target output unit (1-9)")):
            energy = eig.groupby(["component", by]).e.sum().unstack(by)
            image = ax.imshow(energy.to_numpy(), aspect="auto", cmap="magma", vmin=0)
            ax.set_yticks(range(len(energy.index)), [str(c) for c in energy.index], fontsize=7)
            ax.set_xticks(range(len(energy.columns)), list(energy.columns), rotation=90, fontsize=6)
            ax.set(title=f"{init} init: weight by {name}", ylabel="eigenvector (by eigenvalue)")
            fig.colorbar(image, ax=ax, fraction=0.04)
    return save_figure(fig, out_dir, "multitask_kernel_eigenvectors")


def _cluster_table(frame: pd.DataFrame, inits: list[str]) -> pd.DataFrame:
    rows = []
    for init in inits:
        sub = frame[frame.init == init]
        for stage in ("init", "finetune"):
            row: dict[str, Any] = {"init": init, "stage": stage}
            for label in ("task", "input_group", "output_group", "target_units"):
                col = f"ari_{label}_{stage}"
                if col in sub:
                    row[f"ARI {label.replace('_', ' ')}"] = mean_ci(sub[col])[0]
            rows.append(row)
    return pd.DataFrame(rows)


def _loss_figure(runs: list[dict], out_dir: Path) -> str:
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
    return save_figure(fig, out_dir, "multitask_loss_curves")


def _sharing(runs: list[dict]) -> pd.DataFrame:
    share = pd.concat([r["representation_sharing"].assign(init=r["summary"]["init"], run_id=r["run_id"]) for r in runs])
    share = share.assign(pair=np.where(share.same_input, "same input group", "different input group"))
    share_runs = share.groupby(["init", "stage", "pair", "run_id"]).similarity.mean().reset_index()
    return summarise(share_runs, ["init", "stage", "pair"], "similarity")


# ---------------------------------------------------------------------------
# page
# ---------------------------------------------------------------------------
def _intro(runs: list[dict], frame: pd.DataFrame) -> str:
    s0 = runs[0]["summary"]
    return (
        "The multitasking network (4 input groups x 3 features, 12 tasks = input group x output group, 3 output groups "
        "x 3 units, 200 sigmoid hidden units with a fixed bias of -2) learns the 12 single tasks "
        f"({s0.get('single_epochs')} epochs), then is fine-tuned on concurrent multitasking (1-3 tasks at once; "
        f"{s0.get('finetune_epochs')} epochs). Test losses use stimuli never trained on. The pseudo-kernel "
        "K(x, x_n) = <grad loss(x_n), grad f_k(x)> is computed from the weights before each phase and that phase's "
        f"training set. {len(runs)} runs ({', '.join(f'{(frame.init == i).sum()} {i}' for i in INITS)})."
    )


def _protocol(study_dir: Path, runs: list[dict]) -> str:
    s0 = runs[0]["summary"]
    lrs = sorted({(r["summary"]["init"], r["summary"].get("lr")) for r in runs})
    return (
        f"Protocol ({Path(study_dir).name}): batch {s0.get('batch_size')}, loss {s0.get('loss_reduction', 'mean')} over "
        "samples, learning rate "
        + ", ".join(f"{i} {lr}" for i, lr in lrs)
        + f", training samples per phase {s0.get('n_train', '')}."
    )


def analyse(frame: pd.DataFrame, runs: list[dict]) -> dict:
    comparison = init_comparison(frame)
    k2l = kernel_to_loss(frame)
    return {
        "init_comparison": comparison,
        "claims": claims_frame(init_claims(comparison) + kernel_claims(k2l)),
        "kernel_to_loss": k2l,
        "checks": pd.DataFrame(kernel_checks(frame, runs)),
        "min_p": multitask_min_p(comparison),
        "kernel_per_output": per_output_table(frame),
        "representation_sharing": _sharing(runs),
    }


def _parts(study_dir: Path, runs: list[dict], frame: pd.DataFrame, results: dict, out_dir: Path) -> list:
    inits = [i for i in INITS if (frame.init == i).any()]
    parts = [
        table_html(results["claims"], "Pyle et al.'s claims, our test of each, and the verdict by the replicate rule."),
        para(_protocol(study_dir, runs)),
        para(_intro(runs, frame)),
        table_html(results["checks"], "Checks of the implementation: the kernel's one-step prediction (not findings)."),
        table_html(results["kernel_to_loss"].drop(columns=["key"]), CAPTIONS["kernel_to_loss"]),
    ]
    if len(results["min_p"]):
        parts.append(table_html(results["min_p"], CAPTIONS["min_p"]))
    parts.append(figure_html(_prediction_figure(runs, inits, out_dir), CAPTIONS["prediction"]))
    parts.append(figure_html(_eigen_figure(runs, inits, out_dir), CAPTIONS["eigen"]))
    parts.append(table_html(_cluster_table(frame, inits), CAPTIONS["clusters"]))
    if len(results["kernel_per_output"]):
        parts.append(table_html(results["kernel_per_output"], CAPTIONS["per_output"]))
    parts.append(figure_html(_loss_figure(runs, out_dir), CAPTIONS["losses"]))
    parts.append(table_html(results["init_comparison"].drop(columns=["key"]), CAPTIONS["comparison"]))
    parts.append(table_html(results["representation_sharing"], CAPTIONS["sharing"]))
    return parts


CAPTIONS = {
    "kernel_to_loss": "The kernel-to-loss prediction: each measure of the kernel's structure at initialisation against "
    "the downstream losses across runs (Spearman, exact p for <= 8 runs; Holm within each scope (pooled, each init) "
    "and each reading of the kernel: per output group, as Pyle et al. read it, or all outputs stacked).",
    "min_p": "The replicate rule of the claims' family (smallest attainable p before and after Holm with the "
    "replicates at hand; docs/analysis.md).",
    "prediction": "Kernel-predicted against real change of every output unit on held-out single-task inputs after "
    "one full-batch step at the probe step, computed at initialisation from the single-task curriculum (one run per "
    "init). Points on the diagonal: the kernel predicts the change exactly.",
    "eigen": "Top eigenvectors of the kernel at initialisation (rows, largest first; replicate 0 of each init) and "
    "how their weight (squared loadings over the training samples) splits over the 12 single tasks (left, 'in "
    "i>out o') and over the output unit the sample's target turns on (right, output group x feature). A row lit in "
    "one column is a direction specific to that task or unit.",
    "clusters": "Clustering of the training samples in the space of the top kernel eigenvectors (k-means with as "
    "many clusters as labels): adjusted Rand index against each labelling (1 = the clusters are exactly that "
    "grouping, 0 = chance), mean over runs. Stage init: single-task curriculum at initialisation; finetune: the "
    "multitasking curriculum after single-task training.",
    "per_output": "The kernel of each output group (its 3 output units), eigen-decomposed over the training samples, "
    "as Pyle et al. read it; mean over the 3 groups, then mean and 95% interval over runs. own-output share: the "
    "top eigenvector's weight on samples whose tasks write to the group (chance: its share of samples); task "
    "purity: its largest weight on one task (set).",
    "losses": "Test losses over training, mean and 95% interval over replicates, per initialisation: single-task "
    "training, then fine-tuning on concurrent multitasking.",
    "comparison": "Standard vs large initialisation, paired by replicate (exact sign-flip test, the verdicts' test; "
    "paired t-test and Wilcoxon signed-rank beside it).",
    "sharing": "Overlap of the single tasks' hidden representations (cosine of the centred hidden patterns of the "
    "same stimuli) for task pairs that read the same input group vs different ones; high overlap for different "
    "input groups means shared representations, which interfere when the tasks run at once.",
}


def section(study_dir: Path, out_dir: Path, where: dict | None = None) -> dict:
    study_dir = Path(study_dir)
    runs, skipped = done_runs(study_dir, TABLES, where=where)
    if not runs:
        text = f"No done run of {study_dir.name} was found (python -m pipeline -m study=multitask 'seed=range(0,30)')."
        return {"title": TITLE, "html": section_html(TITLE, [para(text), skipped_note(skipped)]), "tables": {}}
    frame = per_run(runs)
    results = analyse(frame, runs)
    parts = _parts(study_dir, runs, frame, results, out_dir) + [skipped_note(skipped)]
    tables = {"runs": frame, **{k: v for k, v in results.items() if len(v)}}
    return {"title": TITLE, "html": section_html(TITLE, parts), "tables": tables}


def main(argv=None) -> int:
    return main_cli(
        argv,
        prog="python -m analysis.companion.multitask",
        stem="multitask",
        build=lambda root, study, out, where: section(root / (study or STUDY), out, where),
        default_study=STUDY,
    )


if __name__ == "__main__":
    sys.exit(main())

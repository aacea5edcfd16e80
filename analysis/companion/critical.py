"""Report section: critical periods in deep linear networks (competing pathways, matrix completion).

The claims, their tests and the replicate rule are described in docs/companion_critical_multitask.md; the
identities of the model (depth 1 keeps the imbalance a deficit made; a depth-1 factorisation never changes
an unobserved entry) are reported as checks of the implementation, not as findings.
CLI: ``python -m analysis.companion.critical --root OUTPUTS --out DIR`` (critical.html and CSV tables).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from pipeline.schema import has_runs, run_folders, study_folder, table_file

from ..templating import Markup
from .common import (
    CLAIM_COLUMNS,
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
from .power import ONE_SAMPLE, ONE_SIDED, Family, holm, rule_table, shown_effect, sign_flip_p, standardised_mean

TITLE = "Critical learning periods in deep linear networks"
PATHWAYS, COMPLETION = "critical_pathways", "critical_matrix_completion"
# tolerances (documented in docs/companion_critical_multitask.md)
LATE_TOL = 0.025  # a deficit after the window closes leaves the deprived share within 1/2 +- this
LEARNED = 0.95  # the window closes when mode 1 holds this share of its full strength
FLAT_TOL = 1e-6  # depth 1: relative range of the unobserved-entry error over deficit lengths (an identity)
COMPLETE_RATIO = 0.25  # depth >= 2 without deficit: error below this fraction of depth 1's
DAMAGE_RATIO = 2.0  # the longest deficit: error at least this multiple of the no-deficit error
IDENTITY = "an identity of the model: a check of the implementation, not a finding (see the checks)"


# ---------------------------------------------------------------------------
# competing pathways: read
# ---------------------------------------------------------------------------
def pathways_frames(runs: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-run finals (one row per run and mode) and the share trajectories (all recorded steps)."""
    finals, trajectories = [], []
    for run in runs:
        s = run["summary"]
        shares = run["pathway_shares"]
        loss = run["pathway_loss"] if "pathway_loss" in run else None
        onset, length, depth = int(s["deficit_onset"]), int(s["deficit_length"]), int(s["depth"])
        steps = int(shares.step.max())
        # learning is "finished" when the loss first falls below 0.1% of its initial value
        finished = math.nan
        if loss is not None and len(loss):
            below = loss[loss.loss <= 1e-3 * float(loss.loss.iloc[0])]
            finished = float(below.step.iloc[0]) if len(below) else math.nan
        last = shares[shares.step == steps]
        for row in last.itertuples(index=False):
            finals.append(
                {
                    "run_id": run["run_id"],
                    "replicate": int(run["design"]["replicate"]),
                    "depth": depth,
                    "onset": onset,
                    "length": length,
                    "mode": int(row.mode),
                    "level": int(row.level),
                    "share_b": float(row.share_b),
                    "learned_by_step": finished,
                    "amplification": s.get("amplification_mode1") if row.mode == 1 else None,
                    "final_loss": float(s.get("final_loss", math.nan)),
                }
            )
        first = shares[shares["mode"] == 1]
        trajectories.append(
            pd.DataFrame(
                {
                    "run_id": run["run_id"],
                    "depth": depth,
                    "onset": onset,
                    "length": length,
                    "step": first.step.to_numpy(),
                    "share_b": first.share_b.to_numpy(),
                    "strength_a": first.strength_a.to_numpy(),
                    "strength_b": first.strength_b.to_numpy(),
                    "target": first.target.to_numpy(),
                }
            )
        )
    return pd.DataFrame(finals), (pd.concat(trajectories, ignore_index=True) if trajectories else pd.DataFrame())


# ---------------------------------------------------------------------------
# competing pathways: test
# ---------------------------------------------------------------------------
def pathways_effect_tests(finals: pd.DataFrame) -> pd.DataFrame:
    """Per depth: 1/2 minus the deprived pathway's final share of mode 1 after a deficit at onset 0, across
    replicates; the exact sign-flip test (the verdict's) and the t test beside it; Holm over the depths."""
    from scipy import stats

    mode1 = finals[(finals["mode"] == 1) & (finals.onset == 0) & (finals.length > 0)]
    rows = []
    for (depth, length), part in mode1.groupby(["depth", "length"]):
        effect = (0.5 - part.share_b).to_numpy(dtype=float)
        n = len(effect)
        t_p = float(stats.ttest_1samp(effect, 0.0).pvalue) if n >= 2 and effect.std() > 0 else math.nan
        m, lo, hi, _ = mean_ci(effect)
        rows.append(
            {
                "depth": int(depth),
                "length": int(length),
                "n_runs": n,
                "effect_mean": m,
                "ci_low": lo,
                "ci_high": hi,
                "standardised_effect_d": standardised_mean(effect),
                "sign_flip_p": sign_flip_p(effect),
                "t_p": t_p,
            }
        )
    columns = [
        "depth",
        "length",
        "n_runs",
        "effect_mean",
        "ci_low",
        "ci_high",
        "standardised_effect_d",
        "sign_flip_p",
        "t_p",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame["p_holm"] = np.nan  # the claim is about the deep pathways: Holm over depths > 1
    deep = frame.depth > 1
    frame.loc[deep, "p_holm"] = holm(frame.loc[deep, "sign_flip_p"]) if deep.any() else []
    return frame


def learned_by(traj: pd.DataFrame, level: float = LEARNED) -> pd.Series:
    """Per depth, the step by which mode 1 is learned: the first recorded step at which the two pathways together
    hold ``level`` of its full strength, in the runs whose deficit comes last (nothing deprived them before);
    the latest over their replicates."""
    last = traj[traj.onset == traj.groupby("depth").onset.transform("max")]
    reached = last[(last.strength_a + last.strength_b) >= level * last.target]
    first = reached.groupby(["depth", "run_id"]).step.min()
    return first.groupby("depth").max()


def late_tests(finals: pd.DataFrame, traj: pd.DataFrame) -> pd.DataFrame:
    """Per depth and deficit length: every onset at or after the step by which mode 1 is learned (``learned_by``:
    the window has closed). Per replicate, the largest |1/2 - share| of mode 1 over those onsets; "no lasting
    effect" is that it stays below LATE_TOL: exact one-sided sign-flip test of LATE_TOL - largest, Holm over the
    depths."""
    mode1 = finals[(finals["mode"] == 1) & (finals.length > 0)]
    closes = learned_by(traj[traj.length > 0]) if len(traj) else pd.Series(dtype=float)
    rows = []
    for (depth, length), part in mode1.groupby(["depth", "length"]):
        close = closes.get(depth, math.nan)
        late = part[part.onset >= close] if np.isfinite(close) else part.iloc[:0]
        if not len(late):
            continue
        dev = late.assign(dev=(late.share_b - 0.5).abs()).pivot_table(index="replicate", columns="onset", values="dev")
        worst = dev.dropna().max(axis=1).to_numpy()
        rows.append(
            {
                "depth": int(depth),
                "length": int(length),
                "mode_1_learned_by_step": int(close),
                "late_onsets": ", ".join(str(int(o)) for o in sorted(late.onset.unique())),
                "n_runs": len(worst),
                "largest_deviation": float(worst.max()) if len(worst) else math.nan,
                "mean_largest_deviation": float(worst.mean()) if len(worst) else math.nan,
                "sign_flip_p": sign_flip_p(LATE_TOL - worst, alternative="greater") if len(worst) else math.nan,
            }
        )
    columns = [
        "depth",
        "length",
        "mode_1_learned_by_step",
        "late_onsets",
        "n_runs",
        "largest_deviation",
        "mean_largest_deviation",
        "sign_flip_p",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame["p_holm"] = holm(frame.sign_flip_p) if len(frame) else []
    return frame


def pathways_checks(finals: pd.DataFrame) -> list[dict]:
    """Identities of the model, checked as the implementation: depth 1 keeps the imbalance a deficit made
    (both pathways get the same update afterwards), and mirrored pathways without a deficit share every mode."""
    mode1 = finals[finals["mode"] == 1]
    checks = []
    one = mode1[(mode1.depth == 1) & (mode1.length > 0) & mode1.amplification.notna()]
    if len(one):
        amp = one.amplification.astype(float)
        checks.append(
            check_row(
                "depth 1: the imbalance at the end equals the imbalance when the deficit ends (amplification 1)",
                bool(np.all(np.abs(amp - 1) < 1e-6)),
                f"amplification {amp.min():.6f}..{amp.max():.6f} over {len(one)} runs",
                "|amplification - 1| < 1e-6 (both pathways receive the same gradient once the deficit is over)",
            )
        )
    none = finals[finals.length == 0]
    if len(none):
        worst = float((none.share_b - 0.5).abs().max())
        checks.append(
            check_row(
                "no deficit: both pathways hold 1/2 of every mode",
                worst < 1e-6,
                f"largest |share - 1/2| = {worst:.2g} over {none.run_id.nunique()} runs",
                "< 1e-6 (mirrored pathways; under independent initialisation the check does not apply)",
            )
        )
    return checks


def pathways_families(effect_tests: pd.DataFrame, late: pd.DataFrame) -> dict[str, Family]:
    out = {}
    deep = effect_tests[effect_tests.depth > 1] if len(effect_tests) else effect_tests
    if len(deep):
        out["early"] = Family(
            "onset-0 effect per depth > 1",
            "exact sign-flip",
            ONE_SAMPLE,
            "replicate run",
            int(deep.n_runs.min()),
            len(deep),
            pilot_d=float(deep.standardised_effect_d.abs().median()),
        )
    if len(late):
        out["late"] = Family(
            "no lasting effect after the window, per depth",
            "exact one-sided sign-flip",
            ONE_SIDED,
            "replicate run",
            int(late.n_runs.min()),
            len(late),
        )
    return out


def pathways_claims(effect_tests: pd.DataFrame, late: pd.DataFrame) -> pd.DataFrame:
    fams = pathways_families(effect_tests, late)
    deep = effect_tests[effect_tests.depth > 1] if len(effect_tests) else effect_tests
    means = effect_tests.sort_values("depth").effect_mean.to_numpy() if len(effect_tests) else np.array([])
    ordered = bool(len(means) < 2 or np.all(np.diff(means) > 0))
    order_note = (
        "; one depth: the ordering by depth is not tested"
        if len(means) == 1
        else ("" if ordered else "; the mean effect does not grow with depth at every step")
    )
    rows = [
        claim_row(
            "an early deficit leaves a permanent mark, worse for deeper pathways (Kleinman et al.)",
            "onset 0: 1/2 minus the deprived share of mode 1 above 0 per depth > 1 (exact sign-flip, Holm over "
            "depths), and its mean growing with depth",
            fams.get("early"),
            holds=(bool((deep.p_holm < 0.05).all() and (deep.effect_mean > 0).all()) and ordered)
            if len(deep)
            else None,
            p_holm=float(deep.p_holm.max()) if len(deep) else math.nan,
            claimed_way=bool((deep.effect_mean > 0).all() and ordered) if len(deep) else True,
            shown_d=shown_effect(deep.standardised_effect_d, (deep.p_holm < 0.05) & (deep.effect_mean > 0))
            if len(deep)
            else math.nan,
            numbers=", ".join(
                f"depth {r.depth}: {r.effect_mean:.3f}" + (f" (Holm p {r.p_holm:.2g})" if np.isfinite(r.p_holm) else "")
                for r in effect_tests.itertuples()
            )
            + order_note,
        ),
        claim_row(
            "a late deficit has no lasting effect (Kleinman et al.)",
            f"every onset after the window closes (mode 1 learned to {LEARNED:.0%} of its strength): each replicate's "
            f"largest |share - 1/2| of mode 1 over them below {LATE_TOL} (exact one-sided sign-flip, Holm over depths)",
            fams.get("late"),
            holds=bool((late.p_holm < 0.05).all()) if len(late) else None,
            p_holm=float(late.p_holm.max()) if len(late) else math.nan,
            claimed_way=bool((late.mean_largest_deviation < LATE_TOL).all()) if len(late) else True,
            numbers="; ".join(
                f"depth {r.depth}: onsets {r.late_onsets}, largest {r.largest_deviation:.3g} (Holm p {r.p_holm:.2g})"
                for r in late.itertuples()
            ),
        ),
    ]
    identity = dict(
        zip(
            CLAIM_COLUMNS,
            [
                "depth 1 has no critical period (Kleinman et al.)",
                "depth 1: amplification of the imbalance",
                "",
                "",
                "",
                math.nan,
                math.nan,
                IDENTITY,
                "",
            ],
        )
    )
    return claims_frame(rows + [identity])


# ---------------------------------------------------------------------------
# competing pathways: draw
# ---------------------------------------------------------------------------
def _colours(depths):
    return plt.cm.viridis(np.linspace(0, 0.9, max(len(depths), 1)))


def _share_vs_onset_figures(by_cell: pd.DataFrame, depths, out_dir: Path | None) -> list:
    parts = []
    for length in sorted(by_cell.length.unique()):
        part = by_cell[by_cell.length == length]
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for colour, depth in zip(_colours(depths), depths):
            d = part[part.depth == depth].sort_values("onset")
            if len(d):
                ax.errorbar(
                    d.onset,
                    d["mean"],
                    yerr=[d["mean"] - d.ci_low, d.ci_high - d["mean"]],
                    marker="o",
                    color=colour,
                    capsize=2,
                    label=f"depth {depth}",
                )
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set(
            xlabel="deficit onset (step)",
            ylabel="final share of pathway b, mode 1",
            ylim=(-0.02, 0.55),
            title=f"deficit of {length} steps",
        )
        ax.legend(fontsize=8)
        uri = save_figure(fig, out_dir, f"pathways_share_vs_onset_len{length}")
        parts.append(figure_html(uri, CAPTIONS["onset"].format(length=length)))
    return parts


def _share_vs_depth_figure(finals: pd.DataFrame, depths, out_dir: Path | None):
    early = finals[(finals.onset == 0) & (finals.length > 0)]
    if not len(early):
        return None
    lv = summarise(early, ["level", "depth"], "share_b")
    fig, ax = plt.subplots(figsize=(6, 3.8))
    names = {1: "root (mode 1)", 2: "halves (mode 2)", 3: "quarters (modes 3-4)", 4: "leaves (modes 5-8)"}
    for level in sorted(lv.level.unique()):
        d = lv[lv.level == level]
        ax.errorbar(
            d.depth,
            d["mean"],
            yerr=[d["mean"] - d.ci_low, d.ci_high - d["mean"]],
            marker="o",
            capsize=2,
            label=names.get(level, f"level {level}"),
        )
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set(
        xscale="log",
        xlabel="depth (log scale)",
        ylabel="final share of pathway b",
        title="deficit at onset 0",
        ylim=(-0.02, 0.7),
    )
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8)
    return figure_html(save_figure(fig, out_dir, "pathways_share_vs_depth"), CAPTIONS["depth"])


def _trajectory_figure(traj: pd.DataFrame, depths, out_dir: Path | None):
    t0 = traj[(traj.onset == 0) & (traj.length > 0)] if len(traj) else traj
    if not len(t0):
        return None
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for colour, depth in zip(_colours(depths), depths):
        d = t0[t0.depth == depth].groupby("step")[["strength_a", "strength_b", "target"]].mean()
        if len(d):
            ax.plot(d.index, d.strength_a / d.target, color=colour, label=f"depth {depth}: a")
            ax.plot(d.index, d.strength_b / d.target, color=colour, ls="--", label=f"depth {depth}: b")
    ax.set(xlabel="step", ylabel="strength in mode 1 / full strength", title="deficit at onset 0")
    ax.legend(fontsize=7, ncol=2)
    return figure_html(save_figure(fig, out_dir, "pathways_trajectories"), CAPTIONS["trajectories"])


CAPTIONS = {
    "onset": "The deprived pathway's final share of the first mode against when a {length}-step deficit starts, per "
    "depth. Below the dashed line the deficit left a lasting mark. Depth 1 loses a little, less the later the "
    "deficit; deeper pathways lose most of the mode for every onset before their learning transition and nothing "
    "after it (a critical period).",
    "depth": "Final share of the deprived pathway against depth for an early deficit (onset 0), per level of the "
    "hierarchy (averaged over the modes of a level and the replicates). The first modes, learned first, are the "
    "most affected.",
    "trajectories": "How the first mode is learned over training with an early deficit: pathway a (solid) and the "
    "deprived pathway b (dashed), as fractions of the mode's full strength (mean over replicates).",
    "effect": "Onset 0: does an early deficit leave a lasting mark? Per depth, 1/2 minus the deprived pathway's final "
    "share of mode 1 across replicates (exact sign-flip, the verdict's test; the t test beside it); Holm over the "
    "depths > 1 (p_holm; depth 1's mark is the identity of the checks).",
    "late": f"After the window closes (the step by which mode 1 holds {LEARNED:.0%} of its strength in the runs whose "
    "deficit comes last): per depth, each replicate's largest |share - 1/2| of mode 1 over every onset from then "
    f"on, tested to stay below {LATE_TOL} (exact one-sided sign-flip, Holm over the depths).",
    "rule": "The replicate rule of the claims' families (smallest attainable p before and after Holm with the "
    "replicates at hand; docs/analysis.md).",
    "window": "Critical period per depth. Effect = 1/2 minus the deprived pathway's final share of mode 1 (mean over "
    "replicates). Depth 1's effect is small and fades gradually with the onset; deeper pathways lose most of the "
    "mode, and keep losing it for every onset before their learning transition, then not at all.",
    "cells": "Final share of the deprived pathway b in mode 1, per cell (mean and 95% interval over replicates).",
}


# ---------------------------------------------------------------------------
# competing pathways: page
# ---------------------------------------------------------------------------
def pathways_analysis(runs: list[dict]) -> dict:
    finals, traj = pathways_frames(runs)
    by_cell = summarise(finals[finals["mode"] == 1], ["depth", "length", "onset"], "share_b")
    window = critical_window(by_cell)
    effect, late = pathways_effect_tests(finals), late_tests(finals, traj)
    return {
        "finals": finals,
        "traj": traj,
        "by_cell": by_cell,
        "window": window,
        "effect": effect,
        "late": late,
        "claims": pathways_claims(effect, late),
        "checks": pd.DataFrame(pathways_checks(finals), columns=["check", "result", "measured", "criterion"]),
        "rule": rule_table(list(pathways_families(effect, late).values())),
    }


def _pathways_parts(runs: list[dict], r: dict, out_dir: Path | None) -> list:
    depths = sorted(r["finals"].depth.unique())
    parts = [
        table_html(r["claims"], "Kleinman et al.'s claims, our test of each, and the verdict by the replicate rule."),
        para(
            "Two deep linear pathways (a and b) are summed into one output and learn the hierarchical data (8 items, 15 "
            "features). During the deficit pathway b gets no update. A pathway's share of a singular mode is its part "
            "of the mode's strength at the end of training: k_b / (k_a + k_b) with k = u_i^T W v_i. 1/2 means both "
            "pathways learned the mode equally; near 0 means pathway b was shut out for good. "
            f"{len(runs)} runs; error bars are 95% intervals over replicates."
        ),
        table_html(r["checks"], "Checks of the implementation: identities of the model, not findings."),
        *_share_vs_onset_figures(r["by_cell"], depths, out_dir),
    ]
    parts += [
        p
        for p in (_share_vs_depth_figure(r["finals"], depths, out_dir), _trajectory_figure(r["traj"], depths, out_dir))
        if p is not None
    ]
    for key in ("effect", "late", "rule"):
        if len(r[key]):
            parts.append(table_html(r[key], CAPTIONS[key]))
    analytic = analytic_overlay(runs, out_dir)
    if analytic is not None:
        parts.append(analytic[0])
        r["analytic"] = analytic[1]
    parts.append(table_html(r["window"], CAPTIONS["window"]))
    parts.append(table_html(r["by_cell"].rename(columns={"mean": "share_b_mean"}), CAPTIONS["cells"]))
    return parts


def pathways_section(study_dir: Path, out_dir: Path | None, where: dict | None = None) -> dict:
    runs, skipped = done_runs(study_dir, ("pathway_shares", "pathway_loss"), where=where)
    if not runs:
        text = f"No done run of {Path(study_dir).name} was found (python -m pipeline -m study=critical_pathways 'seed=range(0,480)')."
        return {"html": section_html("Competing pathways", [para(text), skipped_note(skipped)], level=3), "tables": {}}
    r = pathways_analysis(runs)
    parts = _pathways_parts(runs, r, out_dir) + [skipped_note(skipped)]
    names = {
        "checks": "pathways_checks",
        "by_cell": "pathways_share_by_cell",
        "effect": "pathways_effect_tests",
        "late": "pathways_late_tests",
        "claims": "pathways_claims",
        "finals": "pathways_finals",
        "window": "pathways_critical_window",
        "rule": "pathways_min_p",
        "analytic": "pathways_analytic_deviation",
    }
    tables = {name: r[key] for key, name in names.items() if key in r}
    return {"html": section_html("Competing pathways", parts, level=3), "tables": tables}


def analytic_overlay(runs: list[dict], out_dir: Path | None, modes: int = 4) -> tuple[Markup, pd.DataFrame] | None:
    """Runs with the aligned initialisation: the simulated mode strengths with the exact solution overlaid
    (one replicate, one panel per depth and deficit), and the largest deviation per run."""
    aligned = []
    for run in runs:
        path = Path(run["dir"]) / table_file("pathway_analytic")
        if path.exists():
            aligned.append((run, pd.read_parquet(path)))
    if not aligned:
        return None
    rows = []
    for run, exact in aligned:
        sim = run["pathway_shares"][["step", "mode", "strength_a", "strength_b", "target"]]
        both = sim.merge(exact, on=["step", "mode"], suffixes=("", "_exact"))
        dev = float(
            np.max(
                np.abs(
                    both[["strength_a", "strength_b"]].to_numpy()
                    - both[["strength_a_exact", "strength_b_exact"]].to_numpy()
                )
                / both[["target"]].to_numpy()
            )
        )
        s = run["summary"]
        rows.append(
            {
                "run_id": run["run_id"],
                "depth": int(s["depth"]),
                "onset": int(s["deficit_onset"]),
                "length": int(s["deficit_length"]),
                "max_deviation_over_mode_strength": dev,
            }
        )
    deviation = pd.DataFrame(rows)
    rep = min(int(r["design"]["replicate"]) for r, _ in aligned)
    shown = sorted(
        ((r, e) for r, e in aligned if int(r["design"]["replicate"]) == rep),
        key=lambda p: (int(p[0]["summary"]["depth"]), int(p[0]["summary"]["deficit_onset"])),
    )[:12]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.4 * len(shown), 3.2), squeeze=False, sharey=True)
    for ax, (run, exact) in zip(axes[0], shown):
        sim = run["pathway_shares"]
        s = run["summary"]
        onset, length = int(s["deficit_onset"]), int(s["deficit_length"])
        for mode in range(1, modes + 1):
            colour = plt.cm.tab10(mode - 1)
            a, e = sim[sim["mode"] == mode], exact[exact["mode"] == mode]
            ax.plot(
                a.step[::5], a.strength_a[::5], "x", ms=3, color=colour, label=f"mode {mode}: a" if mode == 1 else None
            )
            ax.plot(
                a.step[::5], a.strength_b[::5], "+", ms=4, color=colour, label="b (deprived)" if mode == 1 else None
            )
            ax.plot(e.step, e.strength_a, "k--", lw=0.7, label="exact solution" if mode == 1 else None)
            ax.plot(e.step, e.strength_b, "k--", lw=0.7)
        if length:
            ax.axvspan(onset, onset + length, color="grey", alpha=0.15)
        ax.set(title=f"depth {s['depth']}, deficit {onset}-{onset + length}", xlabel="step")
    axes[0][0].set_ylabel("pathway strength k in the mode")
    axes[0][0].legend(fontsize=7)
    uri = save_figure(fig, out_dir, "pathways_analytic_overlay")
    html_ = figure_html(
        uri,
        "Aligned initialisation (the authors'): each pathway's strength in the first modes "
        "from the simulation (x: pathway a, +: the deprived pathway b) and the exact "
        "per-mode solution (dashed; Kleinman et al.'s ODE, discretised at the training "
        "step). Largest deviation over all runs, modes and steps, relative to the mode's "
        f"full strength: {deviation.max_deviation_over_mode_strength.max():.2g}.",
    )
    return html_, deviation


def critical_window(mode1_summary: pd.DataFrame, effect: float = 0.1) -> pd.DataFrame:
    """Per depth and deficit length: the largest lasting effect (1/2 minus the deprived pathway's mean final
    share of mode 1), the latest onset whose effect exceeds ``effect`` and the latest onset that keeps at least
    half of the depth's largest effect (how long the sensitive period lasts)."""
    rows = []
    for (depth, length), part in mode1_summary.groupby(["depth", "length"]):
        size = 0.5 - part["mean"]
        big = part[size > effect]
        half = part[size >= 0.5 * size.max()] if size.max() > 0 else part.iloc[:0]
        rows.append(
            {
                "depth": depth,
                "length": length,
                "largest_effect": float(size.max()),
                f"latest_onset_effect_over_{effect}": int(big.onset.max()) if len(big) else None,
                "latest_onset_keeping_half_the_effect": int(half.onset.max()) if len(half) else None,
                "onsets_tested": ", ".join(str(int(o)) for o in sorted(part.onset)),
            }
        )
    frame = pd.DataFrame(rows)
    for column in (f"latest_onset_effect_over_{effect}", "latest_onset_keeping_half_the_effect"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


# ---------------------------------------------------------------------------
# matrix completion: read
# ---------------------------------------------------------------------------
def completion_finals(runs: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "run_id": r["run_id"],
                "replicate": int(r["design"]["replicate"]),
                "depth": int(r["summary"]["depth"]),
                "deficit_steps": int(r["summary"]["deficit_steps"]),
                "test_error": float(r["summary"]["final_test_error"]),
                "train_loss": float(r["summary"]["final_train_loss"]),
                "unobserved_error": float(r["summary"].get("final_unobserved_error", math.nan)),
            }
            for r in runs
        ]
    )


# ---------------------------------------------------------------------------
# matrix completion: test
# ---------------------------------------------------------------------------
def _by_replicate(finals: pd.DataFrame, depth: int, steps: int) -> pd.Series:
    return finals[(finals.depth == depth) & (finals.deficit_steps == steps)].set_index("replicate").test_error


def _paired_row(claim: str, depth: int, comparison: str, diff: np.ndarray, alternative: str, **extra) -> dict:
    from scipy import stats

    t_p = float(stats.ttest_1samp(diff, 0.0).pvalue) if len(diff) >= 2 and diff.std() > 0 else math.nan
    return {
        "claim": claim,
        "depth": depth,
        "comparison": comparison,
        "n_pairs": len(diff),
        "mean_difference": float(diff.mean()) if len(diff) else math.nan,
        "d": standardised_mean(diff),
        "sign_flip_p": sign_flip_p(diff, alternative=alternative) if len(diff) else math.nan,
        "t_p": t_p,
        **extra,
    }


def completion_tests(finals: pd.DataFrame) -> pd.DataFrame:
    """Paired by replicate, per depth >= 2: without a deficit the error is below COMPLETE_RATIO x depth 1's (exact
    one-sided sign-flip of the margin), and the longest deficit raises it (exact sign-flip of the difference, with
    the error at least doubled); Holm over the depths within each claim."""
    depths = sorted(d for d in finals.depth.unique() if d >= 2)
    longest = int(finals.deficit_steps.max())
    rows = []
    for depth in depths:
        base = _by_replicate(finals, depth, 0)
        one = _by_replicate(finals, 1, 0)
        common = base.index.intersection(one.index)
        if len(common):
            margin = (COMPLETE_RATIO * one[common] - base[common]).to_numpy()
            rows.append(
                _paired_row(
                    "completes", depth, f"{COMPLETE_RATIO} x depth 1 - depth {depth}, T_c = 0", margin, "greater"
                )
            )
        hurt = _by_replicate(finals, depth, longest)
        common = base.index.intersection(hurt.index)
        if longest > 0 and len(common):
            diff = (hurt[common] - base[common]).to_numpy()
            doubled = bool(hurt[common].mean() >= DAMAGE_RATIO * base[common].mean() and diff.mean() > 0.05)
            rows.append(
                _paired_row(
                    "damage",
                    depth,
                    f"T_c={longest} vs 0",
                    diff,
                    "two-sided",
                    base_mean=float(base[common].mean()),
                    deficit_mean=float(hurt[common].mean()),
                    doubled=doubled,
                )
            )
    columns = [
        "claim",
        "depth",
        "comparison",
        "n_pairs",
        "mean_difference",
        "d",
        "sign_flip_p",
        "t_p",
        "base_mean",
        "deficit_mean",
        "doubled",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame["p_holm"] = np.nan
    for _, index in frame.groupby("claim").groups.items():
        frame.loc[index, "p_holm"] = holm(frame.loc[index, "sign_flip_p"])
    return frame


def completion_trend(finals: pd.DataFrame) -> pd.DataFrame:
    """Descriptive: Spearman's rank correlation of the final error with T_c, per depth."""
    from scipy import stats

    rows = []
    for depth, part in finals.groupby("depth"):
        flat = float(part.test_error.max() - part.test_error.min()) <= 1e-6 * float(part.test_error.mean())
        if part.deficit_steps.nunique() > 2 and not flat:
            rho = stats.spearmanr(part.deficit_steps, part.test_error)
            rows.append(
                {"depth": int(depth), "runs": len(part), "spearman_rho": float(rho.statistic), "p": float(rho.pvalue)}
            )
    return pd.DataFrame(rows, columns=["depth", "runs", "spearman_rho", "p"])


def completion_checks(finals: pd.DataFrame) -> list[dict]:
    """Depth 1's gradient never reaches an unobserved entry, so its error there is the same for every deficit,
    whatever it trained on before (an identity of the model; the observed entries converge to the target)."""
    one = finals[finals.depth == 1]
    if one.deficit_steps.nunique() < 2 or one.unobserved_error.isna().all():
        return []
    means = one.groupby("deficit_steps").unobserved_error.mean()
    spread = float((means.max() - means.min()) / means.mean())
    return [
        check_row(
            "depth 1: the error on the unobserved entries does not depend on the deficit",
            spread <= FLAT_TOL,
            f"unobserved-entry errors {means.min():.6g}..{means.max():.6g} (relative range {spread:.2g}); final test "
            f"errors {one.groupby('deficit_steps').test_error.mean().min():.6g}..{one.groupby('deficit_steps').test_error.mean().max():.6g}",
            f"relative range <= {FLAT_TOL} (a depth-1 factorisation's gradient never reaches an unobserved entry)",
        )
    ]


def completion_families(tests: pd.DataFrame) -> dict[str, Family]:
    out = {}
    for claim, design, words in (
        ("completes", ONE_SIDED, "exact one-sided sign-flip"),
        ("damage", ONE_SAMPLE, "exact sign-flip"),
    ):
        part = tests[tests.claim == claim] if len(tests) else tests
        if len(part):
            out[claim] = Family(
                f"{claim}, depths >= 2",
                words,
                design,
                "replicate pair",
                int(part.n_pairs.min()),
                len(part),
                pilot_d=float(part.d.abs().median()),
            )
    return out


def _shown(part: pd.DataFrame) -> float:
    """The effect a completion claim's depths have shown: the median |d| of those significant the claimed way."""
    if not len(part):
        return math.nan
    return shown_effect(part.d, (part.p_holm < 0.05) & (part.mean_difference > 0))


def completion_claims(tests: pd.DataFrame) -> pd.DataFrame:
    fams = completion_families(tests)
    complete = tests[tests.claim == "completes"] if len(tests) else tests
    damage = tests[tests.claim == "damage"] if len(tests) else tests
    rows = [
        claim_row(
            "without a deficit, depth >= 2 completes the matrix (depth 1 does not) (Kleinman et al.)",
            f"paired by replicate, per depth >= 2: error below {COMPLETE_RATIO} x depth 1's (exact one-sided sign-flip, "
            "Holm over depths)",
            fams.get("completes"),
            holds=bool((complete.p_holm < 0.05).all()) if len(complete) else None,
            p_holm=float(complete.p_holm.max()) if len(complete) else math.nan,
            claimed_way=bool((complete.mean_difference > 0).all()) if len(complete) else True,
            shown_d=_shown(complete),
            numbers="; ".join(
                f"depth {r.depth}: margin {r.mean_difference:.3g} (Holm p {r.p_holm:.2g})"
                for r in complete.itertuples()
            ),
        ),
        claim_row(
            "a long deficit permanently damages depth >= 2 (Kleinman et al.)",
            "longest T_c vs none, paired by replicate, per depth >= 2 (exact sign-flip, Holm over depths), and the "
            "error at least doubled",
            fams.get("damage"),
            holds=bool(((damage.p_holm < 0.05) & damage.doubled.astype(bool) & (damage.mean_difference > 0)).all())
            if len(damage)
            else None,
            p_holm=float(damage.p_holm.max()) if len(damage) else math.nan,
            claimed_way=bool((damage.mean_difference > 0).all()) if len(damage) else True,
            shown_d=_shown(damage),
            numbers="; ".join(
                f"depth {r.depth}: {r.base_mean:.3g} -> {r.deficit_mean:.3g} (Holm p {r.p_holm:.2g}, {r.n_pairs} pairs)"
                for r in damage.itertuples()
            ),
        ),
    ]
    identity = dict(
        zip(
            CLAIM_COLUMNS,
            [
                "depth 1 is unaffected by the deficit (Kleinman et al.)",
                "depth 1's final error over deficit lengths",
                "",
                "",
                "",
                math.nan,
                math.nan,
                IDENTITY,
                "",
            ],
        )
    )
    return claims_frame(rows + [identity])


# ---------------------------------------------------------------------------
# matrix completion: draw
# ---------------------------------------------------------------------------
def _run_of(runs: list[dict], depth: int, steps: int, replicate: int) -> dict | None:
    return next(
        (
            r
            for r in runs
            if int(r["summary"]["depth"]) == depth
            and int(r["summary"]["deficit_steps"]) == steps
            and int(r["design"]["replicate"]) == replicate
        ),
        None,
    )


def _error_vs_deficit_figure(by_cell: pd.DataFrame, out_dir: Path | None) -> str:
    depths, lengths = sorted(by_cell.depth.unique()), sorted(by_cell.deficit_steps.unique())
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for colour, depth in zip(_colours(depths), depths):
        d = by_cell[by_cell.depth == depth].sort_values("deficit_steps")
        ax.errorbar(
            d.deficit_steps,
            d["mean"],
            yerr=[d["mean"] - d.ci_low, d.ci_high - d["mean"]],
            marker="o",
            color=colour,
            capsize=2,
            label=f"depth {depth}",
        )
    ax.set_xscale("symlog", linthresh=max(1, min([x for x in lengths if x > 0], default=1)))
    ax.set_xticks(lengths, [str(x) for x in lengths])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(xlabel="deficit length T_c (steps, symlog)", ylabel="final test error (all entries)")
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir, "completion_error_vs_deficit")


def _error_over_time_figure(runs: list[dict], finals: pd.DataFrame, out_dir: Path | None) -> str:
    depths, lengths, rep = (
        sorted(finals.depth.unique()),
        sorted(finals.deficit_steps.unique()),
        int(finals.replicate.min()),
    )
    show = list(dict.fromkeys([lengths[0], lengths[len(lengths) // 2], lengths[-1]] if len(lengths) > 2 else lengths))
    fig, axes = plt.subplots(1, len(depths), figsize=(4 * len(depths), 3.2), sharey=True, squeeze=False)
    for ax, depth in zip(axes[0], depths):
        for tc, colour in zip(show, plt.cm.plasma(np.linspace(0, 0.8, len(show)))):
            run = _run_of(runs, depth, tc, rep)
            if run is None:
                continue
            ax.plot(run["test_error"].step, run["test_error"].test_error, color=colour, label=f"T_c={tc}")
            if tc:
                ax.axvline(tc, color=colour, ls=":", lw=0.8)
        ax.set(title=f"depth {depth}", xlabel="step", yscale="log")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("test error vs target")
    return save_figure(fig, out_dir, "completion_error_over_time")


def _singular_values_figure(runs: list[dict], finals: pd.DataFrame, out_dir: Path | None) -> str:
    deep, lengths, rep = int(finals.depth.max()), sorted(finals.deficit_steps.unique()), int(finals.replicate.min())
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, tc in zip(axes, [lengths[0], lengths[-1]]):
        run = _run_of(runs, deep, tc, rep)
        if run is None:
            continue
        sv = run["singular_values"].pivot(index="step", columns="index", values="value")
        for i, column in enumerate(sv.columns):
            ax.plot(sv.index, sv[column], color=plt.cm.summer(i / max(len(sv.columns), 1)))
        if tc:
            ax.axvline(tc, color="grey", ls=":")
        ax.set(title=f"depth {deep}, T_c = {tc}", xlabel="step")
    axes[0].set_ylabel("top singular values of W")
    return save_figure(fig, out_dir, "completion_singular_values")


COMPLETION_CAPTIONS = {
    "error": "Final test error against the length of the deficit, per depth. Depth 1 never fills in unobserved "
    "entries (flat, high); deeper factorisations complete the target after a short deficit but not after a long one.",
    "time": "Test error against the target over training (first replicate); dotted lines mark the switch from the "
    "deficit matrix to the target.",
    "sv": "The top singular values of the end-to-end matrix over training (deepest factorisation). Without a deficit "
    "about rank_target values grow and the rest stay near 0; after a long deficit more values have grown and do "
    "not shrink back.",
    "tests": "The claims' tests, paired by replicate: the margin below the completion bound at T_c = 0 (exact one-sided "
    "sign-flip) and the longest deficit against none (exact sign-flip; t test p beside it); Holm over the depths "
    "within each claim.",
    "trend": "Descriptive: Spearman's rank correlation of the final error with T_c, per depth.",
    "cells": "Final test error per depth and deficit length (mean and 95% interval).",
}


# ---------------------------------------------------------------------------
# matrix completion: page
# ---------------------------------------------------------------------------
def _completion_intro(runs: list[dict]) -> str:
    s0 = runs[0]["summary"]
    return (
        f"A depth-D factorisation of a {int(s0.get('n_observed', 2000))}-entry-observed 100 x 100 matrix is trained first "
        f"on a rank-{s0.get('rank_deficit', 10)} deficit matrix for T_c steps, then on the rank-{s0.get('rank_target', 5)} "
        f"target for {s0.get('steps')} steps (lr {s0.get('lr')}). Test error: mean squared error over all entries against "
        "the target (entries have mean square 1, so 1 is the error of predicting 0). "
        f"{len(runs)} runs; error bars are 95% intervals over replicates."
    )


def completion_section(study_dir: Path, out_dir: Path | None, where: dict | None = None) -> dict:
    runs, skipped = done_runs(study_dir, ("test_error", "singular_values"), where=where)
    if not runs:
        text = f"No done run of {Path(study_dir).name} was found (python -m pipeline -m study=critical_matrix_completion 'seed=range(0,126)')."
        return {"html": section_html("Matrix completion", [para(text), skipped_note(skipped)], level=3), "tables": {}}
    finals = completion_finals(runs)
    by_cell = summarise(finals, ["depth", "deficit_steps"], "test_error")
    tests, trend = completion_tests(finals), completion_trend(finals)
    claims = completion_claims(tests)
    checks = pd.DataFrame(completion_checks(finals), columns=["check", "result", "measured", "criterion"])
    rule = rule_table(list(completion_families(tests).values()))
    parts = [
        table_html(claims, "Kleinman et al.'s claims, our test of each, and the verdict by the replicate rule."),
        para(_completion_intro(runs)),
        table_html(checks, "Checks of the implementation: identities of the model, not findings."),
        figure_html(_error_vs_deficit_figure(by_cell, out_dir), COMPLETION_CAPTIONS["error"]),
        figure_html(_error_over_time_figure(runs, finals, out_dir), COMPLETION_CAPTIONS["time"]),
        figure_html(_singular_values_figure(runs, finals, out_dir), COMPLETION_CAPTIONS["sv"]),
        table_html(by_cell.rename(columns={"mean": "test_error_mean"}), COMPLETION_CAPTIONS["cells"]),
    ]
    for frame, key in ((tests, "tests"), (trend, "trend"), (rule, None)):
        if len(frame):
            parts.append(table_html(frame, COMPLETION_CAPTIONS[key] if key else CAPTIONS["rule"]))
    parts.append(skipped_note(skipped))
    tables = {
        "completion_min_p": rule,
        "completion_claims": claims,
        "completion_checks": checks,
        "completion_error_by_cell": by_cell,
        "completion_finals": finals,
        "completion_tests": tests,
        "completion_trend": trend,
    }
    return {"html": section_html("Matrix completion", parts, level=3), "tables": tables}


# ---------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------
def _study_kind(study_dir: Path) -> str | None:
    for run_dir in run_folders(study_dir):
        if (run_dir / table_file("pathway_shares")).exists():
            return PATHWAYS
        if (run_dir / table_file("test_error")).exists():
            return COMPLETION
    name = Path(study_dir).name
    return name if name in (PATHWAYS, COMPLETION) else None


def section(study_dir: Path, out_dir: Path, where: dict | None = None) -> dict:
    """The report section of one critical-period study folder (either study; detected from its runs)."""
    kind = _study_kind(study_dir)
    if kind == PATHWAYS:
        sub = pathways_section(study_dir, out_dir, where)
    elif kind == COMPLETION:
        sub = completion_section(study_dir, out_dir, where)
    else:
        sub = {"html": para(f"No critical-period runs under {study_dir}."), "tables": {}}
    return {
        "title": TITLE + (f": {kind.replace('critical_', '').replace('_', ' ')}" if kind else ""),
        "html": section_html(TITLE, [sub["html"]]),
        "tables": sub["tables"],
    }


def sections(root: Path, out_dir: Path, where: dict | None = None) -> dict:
    """Both studies under an outputs root, as one section."""
    parts, tables = [], {}
    for study, build in ((PATHWAYS, pathways_section), (COMPLETION, completion_section)):
        if has_runs(study_folder(root, study)):
            sub = build(study_folder(root, study), out_dir, where)
            parts.append(sub["html"])
            tables.update(sub["tables"])
    if not parts:
        parts.append(para(f"Neither {PATHWAYS} nor {COMPLETION} has run folders under {root}."))
    return {"title": TITLE, "html": section_html(TITLE, parts), "tables": tables}


def main(argv=None) -> int:
    return main_cli(
        argv,
        prog="python -m analysis.companion.critical",
        stem="critical",
        build=lambda root, study, out, where: (
            section(root / study, out, where) if study else sections(root, out, where)
        ),
        default_study=None,
    )


if __name__ == "__main__":
    sys.exit(main())

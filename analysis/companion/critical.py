"""Report section: critical periods in deep linear networks (competing pathways, matrix completion).

The claims, checks and their tolerances are described in docs/companion_critical_multitask.md.
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

from .common import (
    check_row,
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
from .power import holm, min_p_row, min_p_table

TITLE = "Critical learning periods in deep linear networks"
PATHWAYS, COMPLETION = "critical_pathways", "critical_matrix_completion"
# tolerances of the checks (documented in docs/companion_critical_multitask.md)
HALF_TOL = 0.01  # a late deficit leaves the share within 0.5 +- this
FLAT_TOL = 0.02  # depth 1: relative range of the final error over deficit lengths
COMPLETE_RATIO = 0.25  # depth >= 2 without deficit: error below this fraction of depth 1's
DAMAGE_RATIO = 2.0  # the longest deficit: error at least this multiple of the no-deficit error


# ---------------------------------------------------------------------------
# competing pathways
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


def pathways_checks(finals: pd.DataFrame) -> tuple[list[dict], pd.DataFrame]:
    from scipy import stats

    mode1 = finals[finals["mode"] == 1]
    checks = []
    early = mode1[(mode1.onset == 0) & (mode1.length > 0)]
    by_depth = pd.DataFrame()
    if len(early):
        length = int(early.length.mode().iloc[0])
        early = early[early.length == length]
        by_depth = summarise(early, ["depth"], "share_b")
        means = by_depth["mean"].to_numpy()
        monotone = bool(len(means) >= 2 and np.all(np.diff(means) < 0))
        rho = stats.spearmanr(early.depth, early.share_b) if early.depth.nunique() > 1 else None
        measured = ", ".join(f"depth {d}: {m:.3f}" for d, m in zip(by_depth.depth, means))
        if rho is not None:
            measured += f" (Spearman rho {rho.statistic:.2f}, p {rho.pvalue:.2g}, {len(early)} runs)"
        checks.append(
            check_row(
                f"{length}-step deficit at onset 0: the deprived pathway's final share of mode 1 "
                "falls monotonically with depth",
                monotone if len(means) >= 2 else None,
                measured,
                "mean share strictly decreasing from each depth to the next",
            )
        )
    late = mode1[(mode1.length > 0) & np.isfinite(mode1.learned_by_step) & (mode1.onset >= mode1.learned_by_step)]
    if len(late):
        worst = float((late.share_b - 0.5).abs().max())
        checks.append(
            check_row(
                "a deficit that starts after learning has finished leaves the shares at 1/2",
                worst <= HALF_TOL,
                f"{len(late)} runs (onsets {sorted(int(o) for o in late.onset.unique())}), "
                f"largest |share - 1/2| = {worst:.2g}",
                f"|share - 1/2| <= {HALF_TOL}",
            )
        )
    else:
        checks.append(
            check_row(
                "a deficit that starts after learning has finished leaves the shares at 1/2",
                None,
                "no run's deficit starts after its loss fell below 0.1% of the initial",
                "add a late onset (e.g. study.deficit_onset=800)",
            )
        )
    one = mode1[(mode1.depth == 1) & (mode1.length > 0) & mode1.amplification.notna()]
    if len(one):
        amp = one.amplification.astype(float)
        deep = mode1[
            (mode1.depth > 1) & (mode1.onset == 0) & (mode1.length > 0) & mode1.amplification.notna()
        ].amplification.astype(float)
        checks.append(
            check_row(
                "depth 1 shows no lasting effect beyond what was learned during the deficit (no amplification)",
                bool(np.all(np.abs(amp - 1) < 1e-6)),
                f"depth 1 amplification {amp.min():.6f}..{amp.max():.6f}"
                + (f"; depth > 1 at onset 0: {deep.min():.3g}..{deep.max():.3g}" if len(deep) else "")
                + "; depth-1 final share at onset 0: "
                + (", ".join(f"{v:.3f}" for v in one[one.onset == 0].share_b.head(3)) or "n/a"),
                "depth 1: (k_a - k_b) at the end equals its value when the deficit ends (ratio 1)",
            )
        )
    return checks, by_depth


def _verdict(check: dict | None) -> str:
    return "not measured" if check is None else check["result"]


def pathways_claims(checks: list[dict], effect_tests: pd.DataFrame) -> pd.DataFrame:
    monotone = next((c for c in checks if "falls monotonically" in c["check"]), None)
    late = next((c for c in checks if "after learning has finished" in c["check"]), None)
    one = next((c for c in checks if "depth 1 shows no lasting" in c["check"]), None)
    deep = effect_tests[effect_tests.depth > 1] if len(effect_tests) else effect_tests
    lasting_ok = bool(len(deep) and (deep.p_holm < 0.05).all())
    if not len(deep):
        lasting = "not measured"
    elif deep.depth.nunique() == 1 and effect_tests.depth.nunique() == 1:
        lasting = (
            "holds for the permanent mark (one depth: the ordering by depth is not tested)"
            if lasting_ok
            else "not decided (see the smallest attainable p)"
        )
    elif lasting_ok and _verdict(monotone) == "holds":
        lasting = "holds"
    else:
        lasting = "does NOT hold (or not decided: see the smallest attainable p)"
    rows = [
        {
            "claim (Kleinman et al.)": "an early deficit leaves a permanent mark, worse for deeper pathways",
            "our test": "onset 0: 1/2 minus the deprived share of mode 1 > 0 per depth > 1 (t, Holm over depths) "
            "and the mean share strictly falling with depth",
            "verdict": lasting,
            "numbers": ", ".join(
                f"depth {r.depth}: {r.effect_mean:.3f} (Holm p {r.p_holm:.2g})" for r in effect_tests.itertuples()
            )
            if len(effect_tests)
            else "",
        },
        {
            "claim (Kleinman et al.)": "a late deficit (after learning) has no lasting effect",
            "our test": "final share within 0.01 of 1/2 when the deficit starts after the loss fell below 0.1%",
            "verdict": _verdict(late),
            "numbers": late["measured"] if late else "",
        },
        {
            "claim (Kleinman et al.)": "depth 1 has no critical period",
            "our test": "depth 1: imbalance at the end equals the imbalance when the deficit ends (ratio 1)",
            "verdict": _verdict(one),
            "numbers": one["measured"] if one else "",
        },
    ]
    return pd.DataFrame(rows)


def pathways_effect_tests(finals: pd.DataFrame) -> pd.DataFrame:
    """Per depth: 1/2 - final share of mode 1 after a deficit at onset 0, tested against 0 across replicates."""
    from scipy import stats

    mode1 = finals[(finals["mode"] == 1) & (finals.onset == 0) & (finals.length > 0)]
    rows = []
    for (depth, length), part in mode1.groupby(["depth", "length"]):
        effect = (0.5 - part.share_b).to_numpy(dtype=float)
        n = len(effect)
        t_p = w_p = math.nan
        if n >= 2 and effect.std() > 0:
            t_p = float(stats.ttest_1samp(effect, 0.0).pvalue)
        if n >= 1 and np.any(effect != 0):
            w_p = float(stats.wilcoxon(effect).pvalue) if n >= 2 else 1.0
        m, lo, hi, _ = mean_ci(effect)
        d = float(effect.mean() / effect.std(ddof=1)) if n >= 2 and effect.std() > 0 else math.nan
        rows.append(
            {
                "depth": int(depth),
                "length": int(length),
                "n_runs": n,
                "effect_mean": m,
                "ci_low": lo,
                "ci_high": hi,
                "standardised_effect_d": d,
                "t_p": t_p,
                "signed_rank_p": w_p,
            }
        )
    frame = pd.DataFrame(
        rows,
        columns=[
            "depth",
            "length",
            "n_runs",
            "effect_mean",
            "ci_low",
            "ci_high",
            "standardised_effect_d",
            "t_p",
            "signed_rank_p",
        ],
    )
    frame["p_holm"] = holm(frame.t_p) if len(frame) else []
    return frame


def analytic_overlay(runs: list[dict], out_dir: Path | None, modes: int = 4) -> tuple[str, pd.DataFrame] | None:
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


def pathways_section(study_dir: Path, out_dir: Path | None) -> dict:
    runs, skipped = done_runs(study_dir, ("pathway_shares", "pathway_loss"))
    parts = []
    if not runs:
        parts += [
            para(
                f"No done run of {Path(study_dir).name} was found (python -m pipeline -m "
                "study=critical_pathways 'seed=range(0,480)')."
            ),
            skipped_note(skipped),
        ]
        return {"html": section_html("Competing pathways", parts, level=3), "tables": {}}
    finals, traj = pathways_frames(runs)
    mode1 = finals[finals["mode"] == 1]
    by_cell = summarise(mode1, ["depth", "length", "onset"], "share_b")
    checks, by_depth = pathways_checks(finals)
    parts.append(
        para(
            "Two deep linear pathways (a and b) are summed into one output and learn the hierarchical data "
            "(8 items, 15 features). During the deficit pathway b gets no update. A pathway's share of a singular "
            "mode is its part of the mode's strength at the end of training: k_b / (k_a + k_b) with "
            "k = u_i^T W v_i. 1/2 means both pathways learned the mode equally; near 0 means pathway b was "
            f"shut out for good. {len(runs)} runs; error bars are 95% intervals over replicates."
        )
    )
    effect_tests = pathways_effect_tests(finals)
    claims = pathways_claims(checks, effect_tests)
    parts.insert(0, table_html(claims, "Kleinman et al.'s claims, our test of each, and the verdict."))
    parts.append(table_html(pd.DataFrame(checks), "Checks of the issue, with what was measured."))
    depths = sorted(mode1.depth.unique())
    colours = plt.cm.viridis(np.linspace(0, 0.9, max(len(depths), 1)))

    # share against onset, one line per depth (the critical period)
    for length in sorted(by_cell.length.unique()):
        part = by_cell[by_cell.length == length]
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for colour, depth in zip(colours, depths):
            d = part[part.depth == depth].sort_values("onset")
            if not len(d):
                continue
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
        parts.append(
            figure_html(
                uri,
                f"The deprived pathway's final share of the first mode against when a "
                f"{length}-step deficit starts, per depth. Below the dashed line the "
                "deficit left a lasting mark. Depth 1 loses a little, less the later the "
                "deficit; deeper pathways lose most of the mode for every onset before "
                "their learning transition and nothing after it (a critical period).",
            )
        )
    # share against depth at onset 0, every mode level
    early = finals[(finals.onset == 0) & (finals.length > 0)]
    if len(early):
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
        uri = save_figure(fig, out_dir, "pathways_share_vs_depth")
        parts.append(
            figure_html(
                uri,
                "Final share of the deprived pathway against depth for an early deficit "
                "(onset 0), per level of the hierarchy (averaged over the modes of a level "
                "and the replicates). The first modes, learned first, are the most "
                "affected.",
            )
        )
    # trajectories at onset 0
    t0 = traj[(traj.onset == 0) & (traj.length > 0)]
    if len(t0):
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for colour, depth in zip(colours, depths):
            d = t0[t0.depth == depth].groupby("step")[["strength_a", "strength_b", "target"]].mean()
            if not len(d):
                continue
            ax.plot(d.index, d.strength_a / d.target, color=colour, label=f"depth {depth}: a")
            ax.plot(d.index, d.strength_b / d.target, color=colour, ls="--", label=f"depth {depth}: b")
        ax.set(xlabel="step", ylabel="strength in mode 1 / full strength", title="deficit at onset 0")
        ax.legend(fontsize=7, ncol=2)
        uri = save_figure(fig, out_dir, "pathways_trajectories")
        parts.append(
            figure_html(
                uri,
                "How the first mode is learned over training with an early deficit: "
                "pathway a (solid) and the deprived pathway b (dashed), as fractions of "
                "the mode's full strength (mean over replicates).",
            )
        )
    if len(effect_tests):
        parts.append(
            table_html(
                effect_tests,
                "Headline tests: does an early deficit (onset 0) leave a lasting "
                "mark? Per depth, 1/2 minus the deprived pathway's final share of "
                "mode 1 across replicates (one-sample t; exact signed-rank p "
                "beside it); Holm over the depths (p_holm).",
            )
        )
        floors = min_p_table(
            [min_p_row("onset-0 effect per depth", "signed_rank", int(effect_tests.n_runs.min()), len(effect_tests))]
        )
        parts.append(
            table_html(
                floors,
                "Smallest attainable p of the headline family with the replicates at hand "
                "(the power rule of docs/companion_critical_multitask.md).",
            )
        )
    analytic = analytic_overlay(runs, out_dir)
    if analytic is not None:
        parts.append(analytic[0])
    window = critical_window(by_cell)
    parts.append(
        table_html(
            window,
            "Critical period per depth. Effect = 1/2 minus the deprived pathway's final "
            "share of mode 1 (mean over replicates). Depth 1's effect is small and fades "
            "gradually with the onset; deeper pathways lose most of the mode, and keep "
            "losing it for every onset before their learning transition, then not at "
            "all.",
        )
    )
    parts.append(
        table_html(
            by_cell.rename(columns={"mean": "share_b_mean"}),
            "Final share of the deprived pathway b in mode 1, per cell (mean and 95% interval over replicates).",
        )
    )
    parts.append(skipped_note(skipped))
    tables = {
        "pathways_checks": pd.DataFrame(checks),
        "pathways_share_by_cell": by_cell,
        "pathways_effect_tests": effect_tests,
        "pathways_claims": claims,
        "pathways_finals": finals,
        "pathways_critical_window": window,
    }
    if len(by_depth):
        tables["pathways_share_by_depth_onset0"] = by_depth
    if analytic is not None:
        tables["pathways_analytic_deviation"] = analytic[1]
    return {"html": section_html("Competing pathways", parts, level=3), "tables": tables}


# ---------------------------------------------------------------------------
# matrix completion
# ---------------------------------------------------------------------------
def tests_frame(tests: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(tests, columns=["depth", "comparison", "n_pairs", "mean_difference", "paired_t_p"])
    headline = frame.comparison.str.startswith("T_c=")
    frame["p_holm"] = np.nan
    frame.loc[headline, "p_holm"] = holm(frame.loc[headline, "paired_t_p"])
    return frame


def completion_claims(checks: list[dict], tests: pd.DataFrame) -> pd.DataFrame:
    def find(text):
        return next((c for c in checks if text in c["check"]), None)

    complete, damage, flat = find("completes the target"), find("raises the final error"), find("stays flat")
    head = tests[tests.comparison.str.startswith("T_c=")]
    decided = len(head) and bool((head.p_holm < 0.05).all())
    rows = [
        {
            "claim (Kleinman et al.)": "without a deficit, depth >= 2 completes the matrix (depth 1 does not)",
            "our test": "final test error of each depth >= 2 below 0.25 x depth 1's",
            "verdict": _verdict(complete),
            "numbers": complete["measured"] if complete else "",
        },
        {
            "claim (Kleinman et al.)": "a long deficit permanently damages depth >= 2",
            "our test": "longest T_c vs none, paired by replicate, per depth >= 2 (t, Holm over depths), and the "
            "error at least doubled",
            "verdict": (
                "holds"
                if decided and _verdict(damage) == "holds"
                else _verdict(damage)
                + ("" if decided else "; not significant after Holm (see the smallest attainable p)")
            ),
            "numbers": "; ".join(
                f"depth {r.depth}: +{r.mean_difference:.3g} (Holm p {r.p_holm:.2g}, {r.n_pairs} pairs)"
                for r in head.itertuples()
            ),
        },
        {
            "claim (Kleinman et al.)": "depth 1 is unaffected by the deficit",
            "our test": "relative range of depth 1's final error over deficit lengths <= 0.02",
            "verdict": _verdict(flat),
            "numbers": flat["measured"] if flat else "",
        },
    ]
    return pd.DataFrame(rows)


def completion_section(study_dir: Path, out_dir: Path | None) -> dict:
    from scipy import stats

    runs, skipped = done_runs(study_dir, ("test_error", "singular_values"))
    parts = []
    if not runs:
        parts += [
            para(
                f"No done run of {Path(study_dir).name} was found (python -m pipeline -m "
                "study=critical_matrix_completion 'seed=range(0,126)')."
            ),
            skipped_note(skipped),
        ]
        return {"html": section_html("Matrix completion", parts, level=3), "tables": {}}
    finals = pd.DataFrame(
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
    by_cell = summarise(finals, ["depth", "deficit_steps"], "test_error")
    s0 = runs[0]["summary"]
    parts.append(
        para(
            f"A depth-D factorisation of a {int(s0.get('n_observed', 2000))}-entry-observed 100 x 100 matrix is "
            f"trained first on a rank-{s0.get('rank_deficit', 10)} deficit matrix for T_c steps, then on the "
            f"rank-{s0.get('rank_target', 5)} target for {s0.get('steps')} steps (lr {s0.get('lr')}). Test error: "
            "mean squared error over all entries against the target (entries have mean square 1, so 1 is "
            f"the error of predicting 0). {len(runs)} runs; error bars are 95% intervals over replicates."
        )
    )
    checks = []
    depths = sorted(finals.depth.unique())
    lengths = sorted(finals.deficit_steps.unique())
    no_deficit = by_cell[by_cell.deficit_steps == 0].set_index("depth")["mean"]
    if 1 in no_deficit.index and any(d >= 2 for d in no_deficit.index):
        deep = no_deficit[no_deficit.index >= 2]
        checks.append(
            check_row(
                "no deficit: depth >= 2 completes the target (test error well below depth 1)",
                bool((deep < COMPLETE_RATIO * no_deficit[1]).all()),
                ", ".join(f"depth {d}: {v:.3g}" for d, v in no_deficit.items()),
                f"error of each depth >= 2 below {COMPLETE_RATIO} x depth 1's",
            )
        )
    longest = max(lengths)
    tests = []
    if longest > 0:
        rows, ok = [], []
        for depth in [d for d in depths if d >= 2]:
            base = finals[(finals.depth == depth) & (finals.deficit_steps == 0)].set_index("replicate").test_error
            hurt = finals[(finals.depth == depth) & (finals.deficit_steps == longest)].set_index("replicate").test_error
            common = base.index.intersection(hurt.index)
            if not len(common):
                continue
            ok.append(
                bool(
                    hurt[common].mean() >= DAMAGE_RATIO * base[common].mean()
                    and hurt[common].mean() - base[common].mean() > 0.05
                )
            )
            rows.append(f"depth {depth}: {base[common].mean():.3g} -> {hurt[common].mean():.3g}")
            diff = (hurt[common] - base[common]).to_numpy()
            p = (
                float(stats.ttest_rel(hurt[common], base[common]).pvalue)
                if len(common) > 1 and diff.std() > 0
                else math.nan
            )
            tests.append(
                {
                    "depth": depth,
                    "comparison": f"T_c={longest} vs 0",
                    "n_pairs": len(common),
                    "mean_difference": float(diff.mean()),
                    "paired_t_p": p,
                }
            )
        if ok:
            checks.append(
                check_row(
                    f"a long deficit (T_c = {longest}) raises the final error for depth >= 2",
                    all(ok),
                    "; ".join(rows),
                    f"error at least {DAMAGE_RATIO} x the no-deficit error and higher by > 0.05",
                )
            )
    one = by_cell[by_cell.depth == 1]
    if len(one) > 1:
        spread = float((one["mean"].max() - one["mean"].min()) / one["mean"].mean())
        checks.append(
            check_row(
                "depth 1 stays flat (the deficit does not change its final error)",
                spread <= FLAT_TOL,
                f"final errors {one['mean'].min():.4g}..{one['mean'].max():.4g} (relative range {spread:.2g})",
                f"relative range <= {FLAT_TOL}",
            )
        )
    for depth in depths:
        part = finals[finals.depth == depth]
        flat = float(part.test_error.max() - part.test_error.min()) <= 1e-6 * float(part.test_error.mean())
        if part.deficit_steps.nunique() > 2 and not flat:
            rho = stats.spearmanr(part.deficit_steps, part.test_error)
            tests.append(
                {
                    "depth": depth,
                    "comparison": "Spearman: error vs T_c",
                    "n_pairs": len(part),
                    "mean_difference": float(rho.statistic),
                    "paired_t_p": float(rho.pvalue),
                }
            )
    parts.append(table_html(pd.DataFrame(checks), "Checks of the issue, with what was measured."))
    claims = completion_claims(checks, tests_frame(tests))
    parts.insert(0, table_html(claims, "Kleinman et al.'s claims, our test of each, and the verdict."))

    colours = plt.cm.viridis(np.linspace(0, 0.9, max(len(depths), 1)))
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for colour, depth in zip(colours, depths):
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
    uri = save_figure(fig, out_dir, "completion_error_vs_deficit")
    parts.append(
        figure_html(
            uri,
            "Final test error against the length of the deficit, per depth. Depth 1 never "
            "fills in unobserved entries (flat, high); deeper factorisations complete the "
            "target after a short deficit but not after a long one.",
        )
    )
    # error over time and singular values for one replicate
    rep = min(finals.replicate)
    show = [lengths[0], lengths[len(lengths) // 2], longest] if len(lengths) > 2 else lengths
    show = list(dict.fromkeys(show))
    fig, axes = plt.subplots(1, len(depths), figsize=(4 * len(depths), 3.2), sharey=True, squeeze=False)
    for ax, depth in zip(axes[0], depths):
        for tc, colour in zip(show, plt.cm.plasma(np.linspace(0, 0.8, len(show)))):
            run = next(
                (
                    r
                    for r in runs
                    if int(r["summary"]["depth"]) == depth
                    and int(r["summary"]["deficit_steps"]) == tc
                    and int(r["design"]["replicate"]) == rep
                ),
                None,
            )
            if run is None:
                continue
            e = run["test_error"]
            ax.plot(e.step, e.test_error, color=colour, label=f"T_c={tc}")
            if tc:
                ax.axvline(tc, color=colour, ls=":", lw=0.8)
        ax.set(title=f"depth {depth}", xlabel="step", yscale="log")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("test error vs target")
    uri = save_figure(fig, out_dir, "completion_error_over_time")
    parts.append(
        figure_html(
            uri,
            f"Test error against the target over training (replicate {rep}); dotted lines "
            "mark the switch from the deficit matrix to the target.",
        )
    )
    deep = max(depths)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, tc in zip(axes, [lengths[0], longest]):
        run = next(
            (
                r
                for r in runs
                if int(r["summary"]["depth"]) == deep
                and int(r["summary"]["deficit_steps"]) == tc
                and int(r["design"]["replicate"]) == rep
            ),
            None,
        )
        if run is None:
            continue
        sv = run["singular_values"].pivot(index="step", columns="index", values="value")
        for i, column in enumerate(sv.columns):
            ax.plot(sv.index, sv[column], color=plt.cm.summer(i / max(len(sv.columns), 1)))
        if tc:
            ax.axvline(tc, color="grey", ls=":")
        ax.set(title=f"depth {deep}, T_c = {tc}", xlabel="step")
    axes[0].set_ylabel("top singular values of W")
    uri = save_figure(fig, out_dir, "completion_singular_values")
    parts.append(
        figure_html(
            uri,
            f"The top singular values of the end-to-end matrix over training (depth {deep}). "
            "Without a deficit about rank_target values grow and the rest stay near 0; after "
            "a long deficit more values have grown and do not shrink back.",
        )
    )
    parts.append(
        table_html(
            by_cell.rename(columns={"mean": "test_error_mean"}),
            "Final test error per depth and deficit length (mean and 95% interval).",
        )
    )
    tests = tests_frame(tests)
    headline = tests.comparison.str.startswith("T_c=")
    floors = min_p_table(
        [
            min_p_row(
                f"T_c={longest} vs 0, depths >= 2",
                "signed_rank",
                int(tests.loc[headline, "n_pairs"].min()),
                int(headline.sum()),
            )
        ]
        if headline.any()
        else []
    )
    if len(tests):
        parts.append(
            table_html(
                tests,
                "Tests: the longest deficit against none (paired by replicate; paired "
                "t-test, Holm over the depths in p_holm: the headline family) and the rank "
                "correlation of the error with T_c (Spearman, rho in mean_difference; "
                "descriptive).",
            )
        )
    if len(floors):
        parts.append(
            table_html(
                floors,
                "Smallest attainable p of the headline family with the replicates at hand "
                "(the power rule of docs/companion_critical_multitask.md).",
            )
        )
    parts.append(skipped_note(skipped))
    return {
        "html": section_html("Matrix completion", parts, level=3),
        "tables": {
            "completion_min_p": floors,
            "completion_claims": claims,
            "completion_checks": pd.DataFrame(checks),
            "completion_error_by_cell": by_cell,
            "completion_finals": finals,
            "completion_tests": tests,
        },
    }


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


def section(study_dir: Path, out_dir: Path) -> dict:
    """The report section of one critical-period study folder (either study; detected from its runs)."""
    kind = _study_kind(study_dir)
    if kind == PATHWAYS:
        sub = pathways_section(study_dir, out_dir)
    elif kind == COMPLETION:
        sub = completion_section(study_dir, out_dir)
    else:
        sub = {"html": para(f"No critical-period runs under {study_dir}."), "tables": {}}
    return {
        "title": TITLE + (f": {kind.replace('critical_', '').replace('_', ' ')}" if kind else ""),
        "html": section_html(TITLE, [sub["html"]]),
        "tables": sub["tables"],
    }


def sections(root: Path, out_dir: Path) -> dict:
    """Both studies under an outputs root, as one section."""
    parts, tables = [], {}
    for study, build in ((PATHWAYS, pathways_section), (COMPLETION, completion_section)):
        if has_runs(study_folder(root, study)):
            sub = build(study_folder(root, study), out_dir)
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
        build=lambda root, study, out: section(root / study, out) if study else sections(root, out),
        default_study=None,
    )


if __name__ == "__main__":
    sys.exit(main())

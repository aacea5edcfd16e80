"""What the report's first screen says: the verdict of each claim at a glance, a banner where the runs
are fewer than the design the verdicts need, and the model warnings that follow from the design,
summed up in one sentence that names the design that removes them.

The verdict summary takes whatever replication.csv holds: one line per claim (its statement), one
mark per primary row (its metric and source, coloured by its verdict; the full verdict, p after Holm
and any other column in its tooltip). The full table follows further down the page.
"""

from __future__ import annotations

import re

import pandas as pd

from .formatting import format_p

__all__ = ["banner", "design_warnings", "replicates_per_pair", "verdict_summary"]

#: verdict words -> the CSS class of their mark
VERDICT_CLASSES = (("replicates", "yes"), ("does not replicate", "no"), ("underpowered", "under"))
#: model warnings that a single run per class pair produces: the run's random effect is its class pair's
DESIGN_WARNING = re.compile(
    r"singular fit|variance estimated as zero|boundary of the parameter space|Hessian matrix .* not positive definite"
)
#: the study's own design (docs/science.md): replicate runs per class pair and epochs
STUDY_REPLICATES, STUDY_EPOCHS = "20-25", 50


def _verdict_class(verdict: str) -> str:
    return next((cls for word, cls in VERDICT_CLASSES if verdict.startswith(word)), "na")


def _short_verdict(verdict: str) -> str:
    """``underpowered (n = ..., needs ...)`` -> ``underpowered``: the mark's text; the rest is its tooltip."""
    return re.sub(r"\s*\(.*", "", verdict)


def _where(row: pd.Series) -> str:
    parts = [str(row.get(c, "")) for c in ("metric", "source")]
    return " · ".join(p for p in parts if p and p != "nan") or "—"


def _tooltip(row: pd.Series) -> str:
    """Every column of the row that is not on the mark, as ``name: value`` lines."""
    shown = {"claim", "statement", "metric", "source", "role"}
    lines = []
    for name, value in row.items():
        if name in shown or value is None or (isinstance(value, float) and pd.isna(value)) or str(value) == "":
            continue
        text = format_p(value) if re.search(r"(^|_)p($|_)", str(name)) else str(value)
        lines.append(f"{name}: {text}")
    return "\n".join(lines)


def verdict_summary(replication: pd.DataFrame | None) -> dict | None:
    """{"counts": "5 replicates, 12 underpowered, ...", "claims": [{"claim", "statement", "marks": [...]}]}."""
    if replication is None or len(replication) == 0:
        return None
    primary = replication[replication["role"].fillna("primary") == "primary"] if "role" in replication else replication
    counts = primary["verdict"].astype(str).map(_short_verdict).value_counts()
    claims = []
    for claim, group in primary.groupby("claim", sort=False):
        marks = [
            {
                "where": _where(row),
                "verdict": _short_verdict(str(row["verdict"])),
                "cls": _verdict_class(str(row["verdict"])),
                "title": _tooltip(row),
            }
            for _, row in group.iterrows()
        ]
        claims.append({"claim": str(claim), "statement": str(group["statement"].iloc[0]), "marks": marks})
    return {"counts": ", ".join(f"{n} {v}" for v, n in counts.items()), "claims": claims}


def replicates_per_pair(table: pd.DataFrame) -> int | None:
    """The fewest real-label runs of any class pair (None without real-label runs)."""
    real = table[table["labels"] == "real"] if "labels" in table else table
    if real.empty:
        return None
    return int(real.groupby(["source", "pair"])["run"].nunique().min())


def _cells(table: pd.DataFrame) -> int:
    real = table[table["labels"] == "real"] if "labels" in table else table
    return int(real.groupby(["source", "pair"]).ngroups)


def _needed_replicates(replication: pd.DataFrame | None) -> int | None:
    """The most replicate runs per class pair an underpowered verdict asks for (``needs >= N replicate runs``)."""
    if replication is None or "verdict" not in replication:
        return None
    found = replication["verdict"].astype(str).str.extract(r"needs >= (\d+) replicate run")[0].dropna()
    return int(found.astype(int).max()) if len(found) else None


def banner(table: pd.DataFrame, replication: pd.DataFrame | None, scope: dict | None) -> list[str]:
    """Sentences for the banner above the verdicts: empty where the runs make the design the verdicts need."""
    lines = []
    if scope and scope.get("demonstration"):
        lines.append(str(scope.get("text", "")))
    needed = _needed_replicates(replication)
    if needed and replication is not None:
        under = int(replication["verdict"].astype(str).str.startswith("underpowered").sum())
        cells = _cells(table)
        lines.append(
            f"{under} of the claims' tests are underpowered; the most demanding needs {needed} replicate runs of "
            f"every class pair: `lcm -m 'seed=range(0,{cells * needed})'` ({cells} class pairs x {needed}), "
            f"with {STUDY_EPOCHS} epochs as the study had (`trainer.epochs={STUDY_EPOCHS}`)."
        )
    if "labels" in table and not (table["labels"] != "real").any():
        lines.append(
            "No shuffled-label runs: the real-vs-shuffled claims are not testable here; the same sweep with "
            "`labels=shuffled` adds them."
        )
    epochs = int(table["epoch"].max()) if "epoch" in table and len(table) else None
    if lines and epochs is not None and epochs < STUDY_EPOCHS and not (scope and scope.get("demonstration")):
        lines.append(f"The runs have {epochs} epochs; the study's had {STUDY_EPOCHS}.")
    return lines


def design_warnings(warnings: list[str], table: pd.DataFrame) -> tuple[str | None, list[str]]:
    """(one sentence for the model warnings that follow from one run per class pair, the other warnings).

    With one replicate run per class pair a model's random effect per run is its class pair again, so
    its variance is estimated at zero: singular fits, estimates on the boundary, Hessians that are not
    positive definite. Replicate runs remove that cause; other warnings are passed on as they are.
    """
    fewest = replicates_per_pair(table)
    if fewest is None or fewest >= 2:
        return None, list(warnings)
    implied = [w for w in warnings if DESIGN_WARNING.search(w)]
    others = [w for w in warnings if not DESIGN_WARNING.search(w)]
    if not implied:
        return None, others
    fits = sorted({w.split(":", 1)[0] for w in implied})
    cells = _cells(table)
    sentence = (
        f"{len(implied)} model warnings in {len(fits)} fits (singular fits, estimates on the boundary, "
        "Hessians that are not positive definite) follow from the design: with one run per class pair, a "
        "run's random effect is its class pair's, and its variance is estimated at zero. Two or more replicate "
        f"runs of every class pair (`lcm -m 'seed=range(0,{2 * cells})'`) remove this cause; the fits are kept "
        "and flagged (the singular column)."
    )
    return sentence, others

"""report.html comes from autoescaped templates: hostile names are text, and every section is still there."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import report
from analysis.cli import main
from analysis.stats import StatsResults
from analysis.templating import environment
from tests.analysis_fixtures import make_study

SCRIPT = "<script>alert(1)</script>"
LATEX = "$\\undefinedcmd{$"


def _empty_stats(**frames) -> StatsResults:
    names = ("mixed_effects", "lrt", "models", "random_effects", "contrasts", "effect_sizes")
    return StatsResults(**{k: frames.get(k, pd.DataFrame()) for k in names})


def _table(pair: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": ["gesture"] * 2,
            "labels": ["real"] * 2,
            "pair": [pair] * 2,
            "run": ["r1", "r2"],
            "epoch": [1, 1],
            "start": [0.5, 0.6],
            "end": [0.7, 0.8],
            "max": [0.8, 0.9],
            "tmax": [0.5, 0.6],
            "end_minus_start": [0.2, 0.2],
        }
    )


def _headings(page: str) -> list[str]:
    return re.findall(r"<h[123][^>]*>(.*?)</h[123]>", page)


def test_every_text_value_is_escaped():
    hostile = f"{SCRIPT} {LATEX}"
    replication = pd.DataFrame(
        [
            {
                "claim": hostile,
                "statement": hostile,
                "authors_test": hostile,
                "authors_figure": hostile,
                "our_test": hostile,
                "metric": "start",
                "source": hostile,
                "authors_result": hostile,
                "estimate": 0.1,
                "ci_low": 0.0,
                "ci_high": 0.2,
                "p_value": 0.01,
                "p_holm": 0.02,
                "verdict": "replicates",
                "note": hostile,
            }
        ]
    )
    page = report.render_report(
        report.ReportInput(
            title=hostile,
            source_description=hostile,
            table=_table(hostile),
            ols=pd.DataFrame({"metric": ["start"], "model": [hostile], "formula": [hostile], "n": [2]}).assign(
                adj_r2=0.5, f=1.0, df_model=1, df_resid=1, p_value=0.3
            ),
            mixed=_empty_stats(),
            figures={},
            skipped=pd.DataFrame({"study": [hostile], "run_id": [hostile], "reason": [hostile]}),
            notes=[hostile],
            files=[hostile],
            timings={hostile: 1.0},
            replication=replication,
            replication_rule=hostile,
            diagnostics=[
                {"title": hostile, "html": "<p>made by analysis.health</p>", "tables": {hostile: _table("a")}}
            ],
        )
    )
    assert "<script" not in page  # no markup from a value, and the page itself runs no script (no MathJax)
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 15
    assert LATEX in page  # text, as written
    assert "<p>made by analysis.health</p>" in page  # a section handed in as HTML stays HTML


def test_long_tables_show_their_first_rows_and_link_the_csv():
    long = pd.DataFrame({"run_id": [f"run-{i:03d}" for i in range(300)], "tie_share": [i / 300 for i in range(300)]})
    t = report._table(long, csv="contrasts.csv")
    assert (len(t.rows), t.total) == (report.LONG_TABLE_ROWS, 300)
    html = str(environment().get_template("report_macros.html.j2").module.table(t))
    assert "run-149" in html and "run-150" not in html and 'href="contrasts.csv"' in html
    assert "The first 150 of 300 rows" in html
    assert "(no rows)" in str(environment().get_template("report_macros.html.j2").module.table(report._table(None)))


def test_numbers_are_formatted_as_before():
    t = report._table(pd.DataFrame({"p_value": [0.0, 2e-5, 0.5, np.nan], "x": [1e6, 0.25, 3, True]}))
    assert [c[0] for c in t.rows[0]] == ["< 1e-300", "1.000e+06"]
    assert [c[0] for c in t.rows[1]] == ["2.0e-05", "0.25"]
    assert t.rows[2][0] == ("0.500", True)
    assert t.rows[3][0][0] == ""


@pytest.fixture(scope="module")
def hostile_study(tmp_path_factory):
    """A one-source study whose class names and a skipped folder's name are markup."""
    root = tmp_path_factory.mktemp("outputs")
    study = make_study(
        root, study="x", sources=("gesture",), pairs=(0, 1), replicates=3, shuffled_replicates=0, epochs=4
    )
    for info in study["runs"].values():
        config_file = Path(info["folder"]) / "config.yaml"
        config = yaml.safe_load(config_file.read_text())
        if config["design"]["pair"] == 0:
            config["design"]["class_names"] = [SCRIPT, LATEX]
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "x" / "runs" / "<img src=x onerror=alert(1)>").mkdir()
    out = root / "analysis"
    assert main(["--root", str(root), "--out", str(out), "--core-only", "--no-figures", "--quiet"]) == 0
    return out


def test_class_names_and_run_ids_are_escaped_in_the_report(hostile_study):
    page = (hostile_study / "report.html").read_text()
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # the skipped folder
    assert LATEX in page


def test_the_report_has_every_section(hostile_study):
    """The headings the f-string report (commit 07c7daa) gave on this study, with the replicate rule and the
    regime (where the runs sit beside the authors') after the verdicts."""
    headings = _headings((hostile_study / "report.html").read_text())
    assert headings == [
        "Learning-curve maps: analysis report",
        "What replicates",
        "The replicate rule on this table",
        "The regime: where the runs sit, beside the authors&#39;",
        "Training health",
        "KNN probe: ties and chance level",
        "Overview",
        "Key results",
        "Warnings",
        "Skipped run folders (6)",
        "Notes",
        "Singular fits",
        "Mixed-effects models (<code>mixed_effects.csv</code>)",
        "Likelihood-ratio tests (<code>lrt.csv</code>)",
        "Effect sizes (<code>effect_sizes.csv</code>)",
        "Class-pair contrasts (<code>contrasts.csv</code>)",
        "The authors' least squares (<code>ols.csv</code>)",
        "Model fits (<code>models.csv</code>, <code>random_effects.csv</code>)",
        "Files",
    ]

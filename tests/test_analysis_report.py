"""report.html comes from autoescaped templates: hostile names are text, and every section is still there."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import formatting, report
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
    assert (len(t.rows), t.total) == (formatting.LONG_TABLE_ROWS, 300)
    html = str(environment().get_template("report_macros.html.j2").module.table(t))
    assert "run-149" in html and "run-150" not in html and 'href="contrasts.csv"' in html
    assert "The first 150 of 300 rows" in html
    assert "(no rows)" in str(environment().get_template("report_macros.html.j2").module.table(report._table(None)))


def test_numbers_are_formatted_by_column_kind():
    """Counts as integers (never 1352.000), p-values as p-values, yes/no, and every other column with the
    decimals its typical value needs for three significant digits, the same all the way down."""
    t = report._table(
        pd.DataFrame(
            {
                "p_value": [0.0, 2e-5, 0.5, np.nan],
                "n_train": [1352.0, 1674.0, 931.0, 1559.0],
                "test_accuracy": [0.909, 0.91412, 1.0, 0.5],
                "chisq": [68.8, 56.61, 2.1, 250.0],
                "movement": [1.2e-4, 3e-4, 0.0, 9e-4],
                "converged": [True, False, True, True],
                "pair": ["PEN/ABD", "1352", "x", ""],
            }
        )
    )
    cells = [[text for text, _ in row] for row in t.rows]
    assert [row[0] for row in cells] == ["< 1e-300", "2.0e-05", "0.500", ""]
    assert [row[1] for row in cells] == ["1352", "1674", "931", "1559"]
    assert [row[2] for row in cells] == ["0.909", "0.914", "1.000", "0.500"]
    assert [row[3] for row in cells] == ["68.8", "56.6", "2.1", "250.0"]
    assert [row[4] for row in cells] == ["1.20e-04", "3.00e-04", "0.00e+00", "9.00e-04"]
    assert [row[5] for row in cells] == ["yes", "no", "yes", "yes"]
    assert [row[6] for row in cells] == ["PEN/ABD", "1352", "x", ""]  # text stays text
    assert t.rows[0][1][1] and not t.rows[0][6][1]  # numbers right-aligned, text not
    assert t.columns[1] == "n_<wbr>train"  # named as in the CSV, free to wrap after an underscore


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
    """The sections in their order: the first screen (the verdicts at a glance beside the average map), the
    maps, the diagnostics, the verdicts in full with the replicate rule, the metrics, the warnings, the
    appendix of model tables (collapsed, each naming its CSV) and the input; details collapsed."""
    page = (hostile_study / "report.html").read_text()
    assert _headings(page) == [
        "Learning-curve maps: analysis report",
        "What replicates, at a glance",
        "Learning-curve maps",
        "The regime: where the runs sit, beside the authors&#39;",
        "Training health",
        "KNN probe: ties and chance level",
        "What replicates, in full",
        "The replicate rule on this table",
        "The metrics over epochs",
        "Warnings",
        "Appendix: model tables",
        "Input and files",
    ]
    summaries = [re.sub(r" &mdash; .*| \(\d+\)$", "", s) for s in re.findall(r"<summary>(.*?)</summary>", page)]
    assert summaries == [
        "Skipped run folders",
        "Singular fits",
        "Key likelihood-ratio tests",
        "Mixed-effects models: fixed effects of the key models",
        "Likelihood-ratio tests, every model",
        "Effect sizes",
        "Class-pair contrasts",
        "The authors&#39; least squares",
        "Model fits",
        "Files next to this report",
    ]

"""The report's layout: the maps and the verdicts on the first screen, a banner when the runs are fewer than
the design the verdicts need, the design's warnings in one sentence, the model tables in a collapsed
appendix linking their CSVs, and every table narrow enough for a 1,280-px window (checked structurally:
the widest unbreakable text of each column, summed over the columns)."""

import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from analysis import formatting, report_lead
from analysis.cli import main
from tests.analysis_fixtures import make_study

#: a 1,280-px window less the page's margins (body max-width 1200 px, 1 em padding)
PAGE_WIDTH_PX = 1200
#: width of one character of the tables' 12-px font, and a cell's padding and border
CHAR_PX, CELL_PX = 7.0, 14
#: the estimate runs under Chromium's own: the training-health table with a study column measured 1,260 px
#: rendered at 1280 px (headless Chromium 150) and 1,204 px estimated; so the estimate must stay 4.5% below
ESTIMATE_RUNS_UNDER = 1260 / 1204


class _Tables(HTMLParser):
    """Every table of a page: per column, the widest unbreakable piece of text of its cells."""

    def __init__(self):
        super().__init__()
        self.tables, self.cell, self.nowrap, self.depth = [], None, False, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append({"class": attrs.get("class", ""), "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th") and self.tables:
            self.cell, self.nowrap = [], "num" in (attrs.get("class") or "")
            self.colspan = int(attrs.get("colspan", 1))

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None and self.tables:
            text = "".join(self.cell)
            pieces = [text] if self.nowrap else re.split(r"[\s\u200b]+|(?<=[_/-])", text)
            widest = max((len(p) for p in pieces), default=0)
            self.tables[-1]["rows"][-1].append(None if self.colspan > 1 else widest)
            self.cell = None


def _min_widths(page: str) -> list[tuple[str, float]]:
    parser = _Tables()
    parser.feed(page)
    out = []
    for table in parser.tables:
        columns: dict[int, int] = {}
        for row in table["rows"]:
            for k, widest in enumerate(row):
                if widest is not None:
                    columns[k] = max(columns.get(k, 0), widest)
        out.append((table["class"], sum(CHAR_PX * w + CELL_PX for w in columns.values())))
    return out


@pytest.fixture(scope="module")
def demonstration(tmp_path_factory):
    """A study of one run per class pair, without shuffled runs: the banner's case."""
    root = tmp_path_factory.mktemp("outputs")
    make_study(root, study="demo", pairs=(0, 1, 2, 3), replicates=1, shuffled_replicates=0, epochs=5, broken=False)
    out = root / "analysis"
    assert main(["--root", str(root), "--out", str(out), "--quiet", "--core-only"]) == 0
    return (out / "report.html").read_text()


def test_the_first_screen_is_the_maps_and_the_verdicts(demonstration):
    page = demonstration
    body = page[page.index("<body>") :]
    first_figure = body.index("<img")
    assert 'alt="maps_average.png"' in body[first_figure : first_figure + 200]  # the average map leads
    glance = body.index("What replicates, at a glance")
    # before the lead: only the title, the summary line and the banner; no other figure or table
    assert body.index("<table") > glance and body.count("<img", 0, glance) == 1
    assert 'class="mark' in body[glance : body.index("<nav>")]
    # the sections after the first screen, in order
    order = [body.index(f'id="{anchor}"') for anchor in ("maps", "verdicts", "metrics", "warnings", "appendix")]
    assert order == sorted(order)


def test_a_banner_says_the_study_is_smaller_than_its_verdicts_need(demonstration):
    banner = demonstration[demonstration.index('<div class="banner">') : demonstration.index('<div class="lead">')]
    assert "Smaller than the design its verdicts need" in banner
    assert "A demonstration of the pipeline, not the study: gesture: 4 class pairs x 1 run" in banner
    # the design that decides the underpowered tests, as a command to copy: 8 class pairs x the runs needed
    needed = re.search(
        r"needs (\d+) replicate runs of every class pair: <code>lcm -m &#39;seed=range\(0,(\d+)\)", banner
    )
    assert needed and int(needed.group(2)) == 8 * int(needed.group(1))
    assert "No shuffled-label runs" in banner and "<code>labels=shuffled</code>" in banner


def test_model_tables_sit_collapsed_in_an_appendix_that_links_the_csvs(demonstration):
    appendix = demonstration[demonstration.index('id="appendix"') : demonstration.index('id="overview"')]
    for csv in ("lrt.csv", "mixed_effects.csv", "effect_sizes.csv", "ols.csv", "models.csv"):
        assert re.search(rf'<summary>[^<]+&mdash; <a href="{csv}">', appendix), csv
    assert "<details open" not in appendix
    # before the appendix no coefficient table: the page's first half is figures and verdicts
    assert "std error" not in demonstration[: demonstration.index('id="appendix"')]


def test_every_table_fits_a_1280_px_window(demonstration):
    widths = _min_widths(demonstration)
    assert len(widths) >= 8
    too_wide = [(cls, round(w)) for cls, w in widths if w * ESTIMATE_RUNS_UNDER > PAGE_WIDTH_PX]
    assert not too_wide


def test_the_width_check_catches_a_table_that_cannot_wrap():
    wide = "<table><tr>" + "".join(f'<td class="num">{"1234567890" * 2}</td>' for _ in range(8)) + "</tr></table>"
    assert _min_widths(wide)[0][1] * ESTIMATE_RUNS_UNDER > PAGE_WIDTH_PX


def test_design_warnings_become_one_sentence_naming_the_design_that_removes_them():
    one_run = pd.DataFrame(
        {"source": ["gesture"] * 4, "pair": ["a/b", "a/b", "a/c", "a/c"], "labels": "real", "run": [1, 1, 2, 2]}
    )
    warnings = [
        "start / pair_gesture: variance estimated as zero (singular fit): Var(run)",
        "start / pair_gesture: statsmodels ConvergenceWarning: The Hessian matrix at the estimated parameter "
        "values is not positive definite.",
        "max / source: statsmodels ConvergenceWarning: The MLE may be on the boundary of the parameter space.",
        "tmax / source_pairs: the profiled fit did not converge",
    ]
    sentence, others = report_lead.design_warnings(warnings, one_run)
    assert sentence.startswith("3 model warnings in 2 fits") and "seed=range(0,4)" in sentence
    assert others == ["tmax / source_pairs: the profiled fit did not converge"]  # not the design's doing
    replicated = pd.concat([one_run, one_run.assign(run=one_run["run"] + 10)])
    assert report_lead.design_warnings(warnings, replicated) == (None, warnings)


def test_the_verdict_summary_takes_whatever_columns_the_table_has():
    rep = pd.DataFrame(
        {
            "claim": ["1", "1", "5"],
            "statement": ["differs by source", "differs by source", "real vs shuffled"],
            "role": ["primary", "secondary: slope", "primary"],
            "metric": ["start", "start", "max"],
            "source": ["", "", "gesture"],
            "verdict": ["replicates", "secondary (no verdict)", "underpowered (n = 3, needs >= 5 replicate runs)"],
            "p_holm": [2e-5, 0.5, 0.2],
            "a_column_added_later": ["its value", "x", "y"],
        }
    )
    summary = report_lead.verdict_summary(rep)
    assert summary["counts"] == "1 replicates, 1 underpowered"  # secondary rows get no mark
    marks = [m for c in summary["claims"] for m in c["marks"]]
    assert [(m["where"], m["verdict"], m["cls"]) for m in marks] == [
        ("start", "replicates", "yes"),
        ("max · gesture", "underpowered", "under"),
    ]
    assert "a_column_added_later: its value" in marks[0]["title"] and "p_holm: 2.0e-05" in marks[0]["title"]
    table = pd.DataFrame({"source": ["g"] * 3, "pair": ["a", "b", "c"], "labels": "real", "run": [1, 2, 3], "epoch": 5})
    lines = report_lead.banner(table, rep, None)
    assert "needs 5 replicate runs" in lines[0] and "seed=range(0,15)" in lines[0]
    assert any("No shuffled-label runs" in line for line in lines)


def test_a_wide_summary_is_turned_so_that_it_fits():
    """A summary of 20 columns and 4 rows (the training-health table) becomes 4 columns, one per source and
    labels, and a row per figure, each formatted by its own kind."""
    wide = pd.DataFrame(
        {"source": ["gesture", "gesture", "sentence", "sentence"], "labels": ["real", "shuffled"] * 2}
        | {f"figure_{k}": [1352.0, 1203.0, 1674.0, 1674.0] for k in range(9)}
        | {f"share_{k}": [0.9333, 0.0667, 1.0, 0.0] for k in range(9)}
    )
    turned = formatting.turned(wide)
    assert [str(c) for c in turned.columns] == [
        "",
        "gesture · real",
        "gesture · shuffled",
        "sentence · real",
        "sentence · shuffled",
    ]
    assert [text for text, _ in turned.rows[0]] == ["figure_<wbr>0", "1352", "1203", "1674", "1674"]
    assert [text for text, _ in turned.rows[9]] == ["share_<wbr>0", "0.933", "0.067", "1.000", "0.000"]
    assert "<th>gesture · shuffled</th>" in formatting.html_table(wide)
    assert _min_widths(str(formatting.html_table(wide)))[0][1] < 0.5 * PAGE_WIDTH_PX

"""Companion analyses pool only the runs of one condition: runs of a study that differ beyond its factors are
refused with the keys named and a --where selection offered; variants a study compares stay apart."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.companion import companion_sections, spectra
from analysis.companion.common import IGNORED_KEYS, MixedConditions, done_runs, run_condition
from analysis.companion.spectra import claim_tests, collect


def _spectrum(rng: np.random.Generator, shift: float) -> pd.DataFrame:
    """A gradient_spectrum.parquet of a two-class run: two layers, epochs 1-3; class 1's recurrent gradient is
    spread over ``shift`` more directions; the readout's gradient is rank one (effective rank 1)."""
    rows = []
    for epoch in (1, 2, 3):
        for group in ("0", "1", "all"):
            for layer, base in (("lstm.weight_hh_l0", 3.0), ("readout.weight", 1.0)):
                rank = (
                    base if layer == "readout.weight" else base + (shift if group == "1" else 0.0) + rng.normal(0, 0.1)
                )
                for stat, index, value in (("effective_rank", 0, rank), ("sv", 1, 1.0 + rng.normal(0, 0.05))):
                    rows.append(
                        {
                            "epoch": epoch,
                            "layer": layer,
                            "layer_kind": "linear",
                            "group_by": "class",
                            "group": group,
                            "n_samples": 50,
                            "kind": "gradient",
                            "stat": stat,
                            "index": index,
                            "value": value,
                        }
                    )
    return pd.DataFrame(rows)


def _write_run(root, name: str, replicate: int, *, labels="real", probe_on=True, lr=0.001, shift=1.0):
    folder = root / "headline" / "runs" / name
    folder.mkdir(parents=True)
    config = {
        "study": {"name": "headline", "runner": "sequence", "factors": ["data_source", "pair"]},
        "data_source": {"name": "gesture", "batch_size": 128},
        "dataset": {"name": "watch"},
        "trainer": {"epochs": 3, "lr": lr, "batch_size": 128, "device": "cpu", "num_threads": 1},
        "probe": {
            "knn": {"enabled": True, "ties": "expected_random_order", "gram_precision": "float32"},
            "gradient_spectrum": {"enabled": probe_on, "group_by": "class", "schedule": "every_epoch"},
        },
        "paths": {"root": str(root)},
        "seed": replicate,
        "labels": labels,
        "pair": 0,
        "deficit": {"kind": "none"},
        "design": {
            "data_source": "gesture",
            "pair": 0,
            "cell": "gesture/pair 0",
            "replicate": replicate,
            "labels": labels,
            "class_names": ["PEN", "ABD"],
        },
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "status.json").write_text(json.dumps({"state": "done"}))
    (folder / "summary.json").write_text(json.dumps({"run_id": name}))
    _spectrum(np.random.default_rng(replicate + 100 * (labels != "real")), shift).to_parquet(
        folder / "gradient_spectrum.parquet"
    )


@pytest.fixture()
def mixed_root(tmp_path):
    """Six replicates with the spectrum probe, and the same six again with a changed learning rate: what a
    second sweep into the same root with one more override leaves behind."""
    for rep in range(6):
        _write_run(tmp_path, f"gesture-p00-r{rep:03d}-aaaa", rep)
        _write_run(tmp_path, f"gesture-p00-r{rep:03d}-bbbb", rep, lr=0.01)
    return tmp_path


def test_every_runner_has_its_ignored_keys_in_the_registry():
    """The keys a companion study ignores come from the one registry (pipeline/config_schema.py), for every
    registered runner."""
    from pipeline.studies import RUNNERS, get_runner

    get_runner("sequence")  # loads every runner
    assert set(RUNNERS) == set(IGNORED_KEYS)
    assert IGNORED_KEYS["sequence"] == () and "dataset" in IGNORED_KEYS["critical_pathways"]
    assert "probe" not in IGNORED_KEYS["dense_sample"]


def test_two_conditions_in_one_root_are_refused_and_named(mixed_root, capsys):
    """Before, the spectra section pooled the 12 runs as 12 replicates."""
    with pytest.raises(MixedConditions) as err:
        done_runs(mixed_root / "headline", ("gradient_spectrum",))
    text = str(err.value)
    assert "6 run(s) with trainer.lr=0.001" in text and "6 run(s) with trainer.lr=0.01" in text
    assert "--where trainer.lr=VALUE (0.001: 6 runs, 0.01: 6 runs)" in text
    runs, skipped = done_runs(mixed_root / "headline", ("gradient_spectrum",), where={"trainer.lr": "0.01"})
    assert len(runs) == 6 and {r["run_id"][-4:] for r in runs} == {"bbbb"}
    assert len(skipped) == 6 and all(reason == "not selected (--where trainer.lr=0.01)" for _, reason in skipped)
    # in the report: a section that says why it refused, not a pooled one
    sections = companion_sections(mixed_root, "headline", mixed_root / "out")
    assert sections[0]["title"] == "headline: the spectra analysis refused to pool different conditions"
    assert sections[0]["error"].startswith("MixedConditions")
    # and on the section's command line: exit 2 with the message, then one condition with --where
    args = ["--root", str(mixed_root), "--out", str(mixed_root / "r")]
    assert spectra.main(args) == 2
    assert "--where trainer.lr=VALUE" in capsys.readouterr().err
    assert spectra.main([*args, "--where", "trainer.lr=0.001"]) == 0
    claims = pd.read_csv(mixed_root / "r" / "spectra_spectra_claims.csv")
    assert claims["n"].tolist() == [6, 6]


def test_a_probe_switched_on_is_a_condition_and_what_leaves_the_run_id_alone_is_not(tmp_path):
    for rep in range(3):
        _write_run(tmp_path, f"gesture-p00-r{rep:03d}-aaaa", rep, probe_on=True)
    base = yaml.safe_load((tmp_path / "headline" / "runs" / "gesture-p00-r000-aaaa" / "config.yaml").read_text())
    moved = {
        **base,
        "paths": {"root": "/elsewhere"},
        "trainer": {**base["trainer"], "device": "cuda", "num_threads": 8},
    }
    assert run_condition(moved) == run_condition(base)
    off = {**base, "probe": {**base["probe"], "gradient_spectrum": {"enabled": False, "group_by": "class"}}}
    assert "probe.gradient_spectrum.enabled" in run_condition(base)
    assert not any(k.startswith("probe.gradient_spectrum") for k in run_condition(off))


def test_real_and_shuffled_runs_of_a_cell_are_separate_cells(tmp_path):
    """A cell's shuffled-label runs are a different condition of the same cell, not more replicates of it."""
    for rep in range(3):
        _write_run(tmp_path, f"gesture-p00-r{rep:03d}-real", rep)
        _write_run(tmp_path, f"gesture-p00-r{rep:03d}-shuf", rep, labels="shuffled", shift=0.0)
    data, _ = collect(tmp_path / "headline")
    assert set(data.cell) == {"gesture/pair 0, real labels", "gesture/pair 0, shuffled labels"}
    tests, identities = claim_tests(data)
    assert set(tests.n_runs) == {3}
    # the rank-one readout: an identity, left out of the tests and listed as a check
    assert {i["layer"] for i in identities if i["stat"] == "effective_rank"} == {"readout.weight"}
    rank = tests[(tests.stat == "effective_rank")].set_index("cell")
    # class 1 (ABD) spreads its gradient over one more direction; the columns are in name order (ABD, PEN)
    real = rank.loc["gesture/pair 0, real labels"]
    assert real["mean_diff"] == pytest.approx(-1.0, abs=0.2) and real["higher"] == "ABD"
    # three replicates: the exact sign-flip test cannot go below 2/2^3 = 0.25
    assert rank["p"].min() == pytest.approx(0.25)


def test_the_spectra_section_opens_with_its_claim_and_the_stand_in_for_clinical_groups(tmp_path):
    """The section used to start with per-epoch t tests and no verdict; it opens now with Baker et al.'s claim,
    the test actually run, the units and the replicate rule's verdict, and says what stands in for diagnoses."""
    for rep in range(3):
        _write_run(tmp_path, f"gesture-p00-r{rep:03d}-real", rep)
    sec = spectra.section(tmp_path / "headline", tmp_path / "out")
    claims = sec["tables"]["spectra_claims"]
    assert list(claims.columns[:3]) == ["claim", "our test", "unit"]
    assert claims["claim"].str.contains("stand-in for Baker et al.'s clinical groups: the two classes").all()
    # three replicates: m x 2/2^3 >= 0.05 after Holm over the m tested layers, whatever p says
    for row in claims.itertuples():
        m = int(row[claims.columns.get_loc("tests in family") + 1])
        needs = next(n for n in range(1, 30) if m * 2 / 2**n < 0.05)
        assert row.verdict == f"underpowered (n = 3 replicate runs, needs >= {needs} replicate runs)"
    html = str(sec["html"])
    first_table = html.index("<table")
    assert html.index("Baker et al.&#39;s claim as tested here") < first_table + 400
    assert "here the groups are class: the two classes of the class pair" in html


# every companion study: (study, the tables its section reads, the study folder's runner check)
COMPANION_TABLES = {
    "critical_pathways": ("pathway_shares", "pathway_loss"),
    "critical_matrix_completion": ("test_error", "singular_values"),
    "multitask": ("loss_curves", "kernel_prediction", "kernel_eigen", "representation_sharing"),
    "dense_sample": ("category_structure",),
}


def _write_study_run(root, study: str, name: str, *overrides: str) -> None:
    """A done run folder of ``study`` whose config.yaml is the one the planner composes for ``overrides``;
    its tables hold a placeholder row (the condition check comes before any table is read for analysis)."""
    from omegaconf import OmegaConf

    from tests.helpers import run_config

    folder = root / study / "runs" / name
    folder.mkdir(parents=True)
    config = OmegaConf.to_container(run_config(f"study={study}", *overrides), resolve=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "status.json").write_text(json.dumps({"state": "done", "run_id": name}))
    (folder / "summary.json").write_text(json.dumps({"run_id": name}))
    for table in COMPANION_TABLES[study]:
        pd.DataFrame({"placeholder": [0.0]}).to_parquet(folder / f"{table}.parquet")


@pytest.mark.parametrize("study", sorted(COMPANION_TABLES))
def test_every_companion_study_refuses_two_conditions_and_counts_a_copied_run_once(tmp_path, study):
    """A second sweep of a companion study into the same root with another learning rate used to double its
    replicates; every companion section now refuses to pool them, names the key and offers --where. A run
    folder copied under another name (the run id its status.json records stays the original's) is one run."""
    from analysis.companion import study_runner

    for rep in range(2):
        _write_study_run(tmp_path, study, f"{study}-r{rep:03d}-base", f"seed={rep}")
    runs, skipped = done_runs(tmp_path / study, COMPANION_TABLES[study])
    assert len(runs) == 2 and skipped == []
    default_lr = runs[0]["config"]["trainer"]["lr"]

    # a copy of one run under another folder name: skipped with the reason, not a third replicate
    import shutil

    shutil.copytree(tmp_path / study / "runs" / f"{study}-r000-base", tmp_path / study / "runs" / f"{study}-r000-copy")
    runs, skipped = done_runs(tmp_path / study, COMPANION_TABLES[study])
    assert [r["run_id"] for r in runs] == [f"{study}-r000-base", f"{study}-r001-base"]
    assert skipped == [
        (
            f"{study}-r000-copy",
            f"folder name differs from the run id its status.json records ({study}-r000-base): a copy? not counted",
        )
    ]

    # the same study again with another learning rate: refused, the key named, a --where selection offered
    for rep in range(2):
        _write_study_run(tmp_path, study, f"{study}-r{rep:03d}-lr", f"seed={rep}", f"trainer.lr={default_lr * 2}")
    assert study_runner(tmp_path / study) in ("critical_pathways", "critical_matrix_completion", study)
    sections = companion_sections(tmp_path, study, tmp_path / "out")
    assert len(sections) == 1
    assert sections[0]["title"].endswith("analysis refused to pool different conditions"), sections[0]["title"]
    error = sections[0]["error"]
    assert f"2 run(s) with trainer.lr={default_lr}" in error and f"2 run(s) with trainer.lr={default_lr * 2}" in error
    assert "--where trainer.lr=VALUE (" in error
    runs, _ = done_runs(tmp_path / study, COMPANION_TABLES[study], where={"trainer.lr": str(default_lr * 2)})
    assert sorted(r["run_id"] for r in runs) == [f"{study}-r000-lr", f"{study}-r001-lr"]

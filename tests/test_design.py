"""The study grid: seed -> design cell + replicate, and run identity."""

import pytest

from pipeline.design import Cell, assign, is_explicit, run_seed, study_cells

HEADLINE = {"name": "headline", "factors": ["data_source", "pair"], "data_sources": ["gesture", "sentence"]}


def C(source, pair):
    return Cell.of(data_source=source, pair=pair)


def test_counterbalancing_maps_seed_to_cell_and_replicate():
    cells = study_cells(HEADLINE, {"gesture": 15, "sentence": 15})
    assert len(cells) == 30
    assert cells[0] == C("gesture", 0) and cells[15] == C("sentence", 0) and cells[29] == C("sentence", 14)
    assert assign(0, cells) == (C("gesture", 0), 0)
    assert assign(31, cells) == (C("gesture", 1), 1)
    assert assign(749, cells) == (C("sentence", 14), 24)
    # a range that is a multiple of the cell count is a balanced design
    counts = {}
    for seed in range(750):
        cell, replicate = assign(seed, cells)
        counts.setdefault(cell, []).append(replicate)
        assert replicate * len(cells) + cells.index(cell) == seed  # one seed per (cell, replicate)
    assert len(counts) == 30 and all(sorted(r) == list(range(25)) for r in counts.values())


def test_unequal_pair_counts_per_source():
    cells = study_cells(HEADLINE, {"gesture": 15, "sentence": 10})
    assert len(cells) == 25
    assert assign(24, cells) == (C("sentence", 9), 0)
    assert assign(25, cells) == (C("gesture", 0), 1)
    assert cells[24].label() == "sentence/pair 9"


def test_generic_factor_levels_make_a_full_factorial_grid():
    study = {
        "name": "s",
        "factors": ["model.depth", "deficit.onset"],
        "levels": {"model.depth": [1, 2, 4], "deficit.onset": [0, 100]},
    }
    cells = study_cells(study)
    assert len(cells) == 6
    assert cells[1].as_dict() == {"model.depth": 1, "deficit.onset": 100}
    assert cells[1].overrides() == ["model.depth=1", "deficit.onset=100"]
    assert cells[1].label() == "depth=1, onset=100"
    with pytest.raises(ValueError, match="no levels for deficit.onset"):
        study_cells({"name": "s", "factors": ["model.depth", "deficit.onset"], "levels": {"model.depth": [1]}})


def test_negative_seed_is_refused():
    with pytest.raises(ValueError, match="seed=-1"):
        assign(-1, [C("gesture", 0)])


def test_explicit_cells_are_detected_from_overrides():
    assert is_explicit(["data_source=sentence"]) and is_explicit(["pair=3", "seed=2"])
    assert not is_explicit(["seed=3", "trainer.epochs=2"])
    assert is_explicit(["+model.depth=2"], ["model.depth"])


def test_run_seed_depends_on_design_identity_only():
    assert run_seed(C("gesture", 3), 2, "real") == run_seed(C("gesture", 3), 2, "real")
    seeds = {
        run_seed(C(s, p), r, l)
        for s in ("gesture", "sentence")
        for p in range(3)
        for r in range(3)
        for l in ("real", "shuffled")
    }
    assert len(seeds) == 36

"""Reading a run folder is confined to it and bounded: crafted or damaged folders (a checksum list naming
/dev/zero or ../../etc/passwd, links, FIFOs, loops, huge files) never hang, crash or mislead status, the
sweep's planning or the analysis; claims survive clock skew; the analysis cache is keyed on content."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time

import pandas as pd
import pytest

from pipeline.record import RunRecord
from pipeline.runfolder import (
    CLAIM_FUTURE_SECONDS,
    CLAIM_STALE_SECONDS,
    MAX_STATUS_BYTES,
    NotReadable,
    claim_state,
    damage,
    done_check,
    file_system_now,
    read_entry,
    read_status,
    try_claim,
)
from pipeline.schema import CLAIM, CONFIG, CORE_FILES, CURVES, STATUS, SUMMARY
from pipeline.status import collect, format_report

RUN = "gesture-p00-r000-aaaaaaaaaa"


def _done(run_dir):
    record = RunRecord(run_dir, run_dir.name, cell="gesture/pair 0")
    record.write_config("design:\n  pair: 0\n")
    record.mark_running()
    record.write_results(pd.DataFrame({"probe": ["knn"], "value": [0.5]}), pd.DataFrame({"b": [2]}), {"c": 3})
    record.mark_done()
    return run_dir


def _rewrite_status(run_dir, **changes):
    status = json.loads((run_dir / STATUS).read_text())
    status.update(changes)
    (run_dir / STATUS).write_text(json.dumps(status))
    return status


def _with_timeout(fn, seconds=20):
    """fn() in a thread; fails the test (instead of hanging it) when it does not return in time."""
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn} hung for {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- crafted checksum lists ----------------------------------------------------------------------------


def test_a_checksum_list_naming_dev_zero_neither_hangs_nor_counts_as_done(tmp_path):
    run_dir = _done(tmp_path / "s" / "runs" / RUN)
    files = json.loads((run_dir / STATUS).read_text())["files"]
    _rewrite_status(run_dir, files={**files, "/dev/zero": {"bytes": 0, "sha256": _sha(b"")}})
    state, why = _with_timeout(lambda: done_check(run_dir))
    assert state == "damaged" and "lists '/dev/zero', which is not a file of the run folder" in why
    report = _with_timeout(lambda: collect(tmp_path))
    assert report["s"]["problems"][0]["detail"].startswith("damaged: status.json lists '/dev/zero'")


def test_a_checksum_list_naming_a_file_outside_the_folder_with_its_digest_is_not_read(tmp_path):
    outside = tmp_path / "etc" / "passwd"
    outside.parent.mkdir()
    outside.write_bytes(b"root:x:0:0::/root:/bin/sh\n")
    run_dir = _done(tmp_path / "s" / "runs" / RUN)
    files = json.loads((run_dir / STATUS).read_text())["files"]
    data = outside.read_bytes()
    for name in ("../../../etc/passwd", str(outside), "..", ".hidden"):
        _rewrite_status(run_dir, files={**files, name: {"bytes": len(data), "sha256": _sha(data)}})
        state, why = done_check(run_dir)
        assert state == "damaged" and "not a file of the run folder" in why, name


def test_a_done_status_must_list_the_core_files_with_sizes_and_digests(tmp_path):
    run_dir = _done(tmp_path / RUN)
    files = json.loads((run_dir / STATUS).read_text())["files"]
    _rewrite_status(run_dir, files={})
    assert done_check(run_dir) == (
        "damaged",
        "status.json does not list config.yaml, curves.parquet, readouts.parquet, summary.json, which every "
        "finished run writes",
    )
    _rewrite_status(run_dir, files={**files, SUMMARY: {"bytes": True, "sha256": "x"}})
    assert "without its size and SHA-256" in done_check(run_dir)[1]
    _rewrite_status(run_dir, files=["config.yaml"])
    assert done_check(run_dir)[0] == "damaged"
    _rewrite_status(run_dir, files=files)
    assert done_check(run_dir) == ("done", None)


@pytest.mark.parametrize("replacement", ["symlink", "fifo", "folder"])
def test_a_record_file_replaced_by_a_link_a_fifo_or_a_folder_is_damaged_without_reading_it(tmp_path, replacement):
    run_dir = _done(tmp_path / RUN)
    target = run_dir / CURVES
    elsewhere = tmp_path / "elsewhere.parquet"
    elsewhere.write_bytes(target.read_bytes())  # the same bytes: only the kind of file differs
    target.unlink()
    if replacement == "symlink":
        target.symlink_to(elsewhere)
    elif replacement == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    state, why = _with_timeout(lambda: done_check(run_dir))
    kind = {"symlink": "a symbolic link", "fifo": "a FIFO", "folder": "a folder"}[replacement]
    assert state == "damaged" and why == f"curves.parquet is {kind}: not read"


def test_a_huge_or_special_status_is_unreadable_not_read_whole(tmp_path):
    run_dir = _done(tmp_path / RUN)
    with open(run_dir / STATUS, "r+b") as fh:
        fh.truncate(MAX_STATUS_BYTES + 1)  # sparse: costs no disk
    state, why = done_check(run_dir)
    assert state == "damaged" and "more than any such file holds" in why
    (run_dir / STATUS).unlink()
    os.mkfifo(run_dir / STATUS)
    assert _with_timeout(lambda: done_check(run_dir)) == ("damaged", "status.json is a FIFO: not read")
    (run_dir / STATUS).unlink()
    (run_dir / STATUS).symlink_to("/dev/zero")
    assert _with_timeout(lambda: done_check(run_dir)) == ("damaged", "status.json is a symbolic link: not read")


def test_reading_an_entry_refuses_names_outside_the_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "secret").write_text("x")
    for name in ("../secret", "/etc/passwd", "", ".."):
        with pytest.raises(NotReadable):
            read_entry(tmp_path / "a", name, 100)
    with pytest.raises(FileNotFoundError):
        read_entry(tmp_path / "a", "absent", 100)


# --- links and loops in runs/ ---------------------------------------------------------------------------


def _study_with_links(tmp_path):
    runs = tmp_path / "s" / "runs"
    good = _done(runs / RUN)
    (runs / "gesture-p00-r001-loooooooop").symlink_to(runs / "gesture-p00-r001-loooooooop")
    (runs / "gesture-p00-r002-elsewhereX").symlink_to(good)
    return runs, good


def test_status_reports_links_and_loops_in_runs_without_following_them(tmp_path):
    _study_with_links(tmp_path)
    report = _with_timeout(lambda: collect(tmp_path))["s"]
    # a link says nothing of its cell (its record is not read)
    assert report["cells"] == {"gesture/pair 0": {"done": 1}, "?": {"missing": 2}}
    details = {p["run_id"]: p["detail"] for p in report["problems"]}
    assert all("symbolic link" in details[name] for name in details) and len(details) == 2
    assert "symbolic link" in format_report(collect(tmp_path))


def test_the_analysis_skips_links_and_loops_with_a_reason(tmp_path):
    from analysis import collect as analysis_collect
    from tests.analysis_fixtures import make_study

    study = make_study(tmp_path / "out", study="s", pairs=(0,), replicates=2, shuffled_replicates=0, broken=False)
    runs = study["root"] / "s" / "runs"
    (runs / "gesture-p00-r009-loooooooop").symlink_to(runs / "gesture-p00-r009-loooooooop")
    inside = sorted(runs.iterdir())[0]
    (runs / "gesture-p00-r008-insideXXXX").symlink_to(inside)
    collection = _with_timeout(lambda: analysis_collect.collect_runs(study["root"], progress=False))
    reasons = {s.run_id: s.reason for s in collection.skipped}
    assert "leads nowhere (or to itself)" in reasons["gesture-p00-r009-loooooooop"]
    assert "a symbolic link (to" in reasons["gesture-p00-r008-insideXXXX"]
    assert len(collection.runs) == len(study["runs"])


def test_the_health_table_of_status_survives_links_fifos_and_damage(tmp_path):
    from analysis.health import health_table
    from tests.analysis_fixtures import make_study

    study = make_study(tmp_path / "out", study="s", pairs=(0,), replicates=2, shuffled_replicates=0, broken=False)
    runs = study["root"] / "s" / "runs"
    (runs / "gesture-p00-r009-loooooooop").symlink_to(runs / "gesture-p00-r009-loooooooop")
    victim = sorted(p for p in runs.iterdir() if not p.is_symlink())[0]
    (victim / SUMMARY).unlink()
    os.mkfifo(victim / SUMMARY)
    rows, skipped = _with_timeout(lambda: health_table(study["root"], "s"))
    assert len(rows) == len(study["runs"]) - 1
    assert any("summary.json" in why for _, why in skipped)


# --- claims and clocks ----------------------------------------------------------------------------------


def _foreign_claim(run_dir, mtime_offset: float):
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM
    path.write_text(json.dumps({"host": "another-node", "pid": 1, "token": "theirs"}))
    now = file_system_now(run_dir)
    os.utime(path, (now + mtime_offset, now + mtime_offset))
    return path


@pytest.mark.parametrize(
    "offset,live",
    [
        (-60, True),  # a heartbeat a minute ago
        (60, True),  # a node whose clock is a minute ahead
        (-(CLAIM_STALE_SECONDS + 60), False),  # no heartbeat for longer than the bound: its node died
        (CLAIM_FUTURE_SECONDS + 60, False),  # dated far ahead (a skewed clock): stale, not live forever
        (86400 * 365, False),
    ],
)
def test_another_hosts_claim_is_judged_by_heartbeat_age_on_the_file_systems_clock(tmp_path, offset, live):
    run_dir = tmp_path / RUN
    _foreign_claim(run_dir, offset)
    assert (claim_state(run_dir) is not None) is live
    claim = try_claim(run_dir)
    assert (claim is None) is live
    if claim is not None:  # the stale claim was taken over
        assert json.loads((run_dir / CLAIM).read_text())["token"] == claim.token


def test_a_skewed_clock_on_the_judging_machine_does_not_change_the_verdict(tmp_path, monkeypatch):
    """The judge's own clock a day off either way: the heartbeat's age is still measured on the clock that
    stamped it (the file system's), so a live claim stays live and a dead one stays stale."""
    live_dir, dead_dir = tmp_path / "live", tmp_path / "dead"
    _foreign_claim(live_dir, -30)
    _foreign_claim(dead_dir, -(CLAIM_STALE_SECONDS + 120))
    real_time = time.time
    for skew in (-86400, 86400):
        monkeypatch.setattr(time, "time", lambda skew=skew: real_time() + skew)
        assert claim_state(live_dir) is not None and claim_state(dead_dir) is None
        assert try_claim(live_dir) is None


def test_a_same_host_claim_whose_pid_was_reused_is_stale(tmp_path):
    run_dir = tmp_path / RUN
    mine = try_claim(run_dir)
    info = json.loads((run_dir / CLAIM).read_text())
    assert info["pid"] == os.getpid() and "pid_start" in info and "boot_id" in info
    mine.release()
    # the same pid (this live process), but started at another moment: an unrelated process
    run_dir.mkdir(exist_ok=True)
    (run_dir / CLAIM).write_text(json.dumps({**info, "pid_start": info["pid_start"] - 1, "token": "old"}))
    assert claim_state(run_dir) is None
    assert try_claim(run_dir) is not None


def test_a_link_in_place_of_a_claim_is_taken_over_after_the_grace(tmp_path):
    run_dir = tmp_path / RUN
    run_dir.mkdir()
    (run_dir / CLAIM).symlink_to("/dev/zero")
    os.utime(run_dir / CLAIM, (time.time() - 3600,) * 2, follow_symlinks=False)
    claim = _with_timeout(lambda: try_claim(run_dir))
    assert claim is not None and not (run_dir / CLAIM).is_symlink()


def test_a_run_folder_that_is_a_link_is_never_claimed(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / RUN).symlink_to(tmp_path / "real")
    with pytest.raises(NotReadable, match="symbolic link"):
        try_claim(tmp_path / RUN)
    assert list((tmp_path / "real").iterdir()) == []


def test_a_claim_from_this_host_is_judged_by_its_process_not_the_clock(tmp_path):
    run_dir = tmp_path / RUN
    run_dir.mkdir()
    (run_dir / CLAIM).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": "x"}))
    os.utime(run_dir / CLAIM, (0, 0))  # ancient: irrelevant while its process lives
    assert claim_state(run_dir) is not None


# --- the analysis cache is keyed on content ---------------------------------------------------------------


def test_a_hand_edited_config_with_its_mtime_restored_is_not_served_from_the_cache(tmp_path):
    import yaml

    from analysis import collect as analysis_collect
    from tests.analysis_fixtures import make_study

    study = make_study(tmp_path / "out", study="s", pairs=(0, 1), replicates=2, shuffled_replicates=0, broken=False)
    victim = next(iter(study["runs"].values()))["folder"]
    _list_files(victim)  # records as the pipeline writes them: status.json lists sizes and digests
    cache = tmp_path / "cache"
    first = analysis_collect.collect_runs(study["root"], cache_dir=cache, progress=False)
    assert first.n_read == len(study["runs"])
    again = analysis_collect.collect_runs(study["root"], cache_dir=cache, progress=False)
    assert again.n_cached == len(study["runs"]) and again.n_read == 0
    config = victim / CONFIG
    before = config.stat()
    edited = yaml.safe_load(config.read_text())
    edited["design"]["labels"] = "shuffled"  # a different condition, by hand
    text = yaml.safe_dump(edited)
    config.write_text(text)
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
    cached = analysis_collect.collect_runs(study["root"], cache_dir=cache, progress=False)
    fresh = analysis_collect.collect_runs(study["root"], progress=False, use_cache=False)
    for collection in (cached, fresh):
        reasons = {s.run_id: s.reason for s in collection.skipped}
        assert "config.yaml" in reasons[victim.name] and len(collection.runs) == len(study["runs"]) - 1
    assert done_check(victim)[0] == "damaged"


def _list_files(run_dir):
    from pipeline.runfolder import file_digest

    status = read_status(run_dir)
    status["files"] = {name: file_digest(run_dir / name) for name in CORE_FILES}
    (run_dir / STATUS).write_text(json.dumps(status))
    assert damage(run_dir, status) is None

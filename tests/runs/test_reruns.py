"""Reruns are handed out only when complete by the run file's rule, owned by an allowed account and
never through a symlink; once, across restarts and overlapping watchers; and a handed-out rerun
that changes is reported. Real directories, real owners (chown as root), the real `dc2` command."""

from __future__ import annotations

import json
import logging
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dc2tasks.products.errors import InputError
from dc2tasks.products.repo import Gen2Repo
from dc2tasks.runs import FactsRequest, JsonRerunStore, MemoryRerunStore, RerunRule, gather, watch_reruns
from dc2tasks.runs.rerun_facts import parse_listing
from dc2tasks.runs.reruns import list_facts
from dc2tasks.sample.layout import repository_cfg
from dc2tasks.slurm.transports.local import SubprocessTransport

DC2 = str(Path(sys.executable).with_name("dc2"))
ME = pwd.getpwuid(os.geteuid()).pw_name
TRACTS = (4850, 4851)
VISITS = (1000, 1001)
PRODUCTS = ("object", "source")
MARKER = RerunRule(ready="marker", marker="DONE")
QUIET = RerunRule(ready="quiet", quiet_hours=2)


def request(rule: RerunRule, **kw) -> FactsRequest:
    base = dict(marker=rule.marker, quiet_hours=rule.quiet_hours, owners=tuple(rule.owners),
                max_entries=rule.max_entries, products=PRODUCTS, tracts=TRACTS, visits=VISITS)
    return FactsRequest(**{**base, **kw})


def put(root: Path, rel: str, text: str = "x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_rerun(repo: Path, name: str, tracts=TRACTS, visits=VISITS, marker: bool = False) -> Path:
    """A rerun as the pipelines leave it: repositoryCfg.yaml, then each tract's and visit's outputs
    at the obs_lsst template paths, and (when asked) the completion marker last."""
    rerun = repo / "rerun" / name
    put(rerun, "repositoryCfg.yaml", repository_cfg("lsst.obs.lsst.imsim.ImsimMapper", ["../.."]))
    layout = Gen2Repo(rerun, [rerun], "obs_lsst")
    for t in tracts:
        put(rerun, layout.relpath("deepCoadd_ref", tract=t, patch="1,1"))
        put(rerun, layout.relpath("deepCoadd_forced_src", tract=t, patch="1,1", filter="r"))
    for v in visits:
        detector = {"raftName": "R22", "detectorName": "S11", "detector": 94}
        put(rerun, layout.relpath("src", visit=v, filter="r", **detector))
    if marker:
        put(rerun, "DONE")
    return rerun


def age(path: Path, hours: float) -> None:
    """Every entry under `path` (itself included) last changed `hours` ago, links not followed."""
    when = time.time() - hours * 3600
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.utime(os.path.join(root, name), (when, when), follow_symlinks=False)
    os.utime(path, (when, when))


def entries(path: Path) -> int:
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(path))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "rerun").mkdir(parents=True)
    (root / "_mapper").write_text("lsst.obs.lsst.imsim.ImsimMapper\n")
    return root


def one_pass(repo: Path, rule: RerunRule, store, **kw):
    return watch_reruns("demo", gather(repo, request(rule, **kw)), rule, store)


def test_marker_rule_waits_for_the_marker_then_hands_out_once(repo, caplog):
    store = MemoryRerunStore()
    write_rerun(repo, "w1")
    with caplog.at_level(logging.INFO, logger="dc2tasks.runs.reruns"):
        report = one_pass(repo, MARKER, store)
    assert report.triggered == []
    assert report.waiting == {"w1": "completion marker DONE: absent"}
    assert f"run demo: rerun {repo}/rerun/w1 not handed out: completion marker DONE: absent" in caplog.text
    assert store.seen("demo") == set()  # not remembered: a later pass looks again

    put(repo / "rerun" / "w1", "DONE")
    report = one_pass(repo, MARKER, store)
    assert report.triggered == ["w1"] and report.waiting == {} and report.changed == {}
    assert one_pass(repo, MARKER, store).triggered == []
    fp = store.processed("demo")["w1"]["fingerprint"]
    assert fp["owner"] == ME and fp["entries"] == entries(repo / "rerun" / "w1") == 24
    assert len(fp["digest"]) == 64


def test_a_marker_that_is_a_symlink_does_not_count(repo):
    rerun = write_rerun(repo, "w1")
    (rerun / "DONE").symlink_to(repo / "_mapper")
    report = one_pass(repo, MARKER, MemoryRerunStore())
    assert report.waiting == {"w1": "completion marker DONE: is a symlink"}


def test_quiet_rule_waits_until_nothing_changed_for_the_period(repo):
    store = MemoryRerunStore()
    rerun = write_rerun(repo, "w1")
    age(rerun, 3)
    put(rerun, "deepCoadd-results/merged/4851/1,2/ref-4851-1,2.fits")  # still being written
    report = one_pass(repo, QUIET, store)
    assert report.triggered == []
    reason = report.waiting["w1"]
    assert reason.startswith("deepCoadd-results/merged/4851 changed at ") and reason.endswith(
        "within the quiet period of 2 h"), reason
    assert store.seen("demo") == set()
    age(rerun, 1.5)  # 1.5 h < 2 h: still not quiet long enough
    assert one_pass(repo, QUIET, store).triggered == []
    age(rerun, 2.5)
    assert one_pass(repo, QUIET, store).triggered == ["w1"]
    assert one_pass(repo, QUIET, store).triggered == []


def test_the_quiet_walk_stops_at_the_first_recent_entry(repo):
    write_rerun(repo, "w1")
    listing = gather(repo, request(QUIET))
    walk = listing.entry("w1").walk
    assert walk.stopped == "recent" and walk.digest is None and walk.entries == 0 and walk.detail == "."


def test_every_tract_and_visit_must_have_its_products(repo):
    write_rerun(repo, "w1", tracts=(4850,), visits=(1000,), marker=True)
    report = one_pass(repo, MARKER, MemoryRerunStore())
    assert report.waiting == {"w1": "missing deepCoadd_ref of tract 4851, deepCoadd_forced_src of "
                                    "tract 4851, src of visit 1001"}
    # a run of object only does not need the visits
    report = one_pass(repo, MARKER, MemoryRerunStore(), products=("object",), tracts=(4850,))
    assert report.triggered == ["w1"]


def test_a_visit_file_is_read_where_the_listing_runs(repo, tmp_path):
    write_rerun(repo, "w1", marker=True)
    (tmp_path / "visits.txt").write_text("# run visits\n1000\n1001\n1002\n")
    report = one_pass(repo, MARKER, MemoryRerunStore(), visits=(), visit_file=str(tmp_path / "visits.txt"))
    assert report.waiting == {"w1": "missing src of visit 1002"}


def test_a_symlinked_rerun_is_never_handed_out_nor_followed(repo, tmp_path):
    elsewhere = write_rerun(tmp_path / "other", "real", marker=True)
    (repo / "rerun" / "linked").symlink_to(elsewhere)
    store = MemoryRerunStore()
    report = one_pass(repo, MARKER, store)
    assert report.waiting == {"linked": "a symlink (never followed)"}
    assert report.triggered == [] and store.seen("demo") == set()
    # a link inside a rerun is an entry of its listing, not a way into another tree
    rerun = write_rerun(repo, "w1", marker=True)
    (rerun / "escape").symlink_to(tmp_path / "other")
    listing = gather(repo, request(MARKER))
    assert listing.entry("w1").walk.entries == entries(rerun) == 25
    assert one_pass(repo, MARKER, store).triggered == ["w1"]


def test_a_symlinked_rerun_directory_is_refused(repo, tmp_path):
    write_rerun(tmp_path / "other", "real", marker=True)
    (repo / "rerun").rmdir()
    (repo / "rerun").symlink_to(tmp_path / "other" / "rerun")
    listing = gather(repo, request(MARKER))
    assert listing.rerun_dir == "link" and listing.reruns == []
    with pytest.raises(InputError, match=r"/repo/rerun is a symlink: the watcher never follows one"):
        watch_reruns("demo", listing, MARKER, MemoryRerunStore())


def test_names_that_are_not_rerun_names_are_listed_apart(repo):
    for name in ("-rf", "bad name;rm", "x\n", ".hidden"):
        write_rerun(repo, name, marker=True)
    write_rerun(repo, "ok", marker=True)
    listing = gather(repo, request(MARKER))
    assert listing.bad_names == sorted(["-rf", "bad name;rm", "x\n", ".hidden"])
    report = watch_reruns("demo", listing, MARKER, MemoryRerunStore())
    assert report.triggered == ["ok"]
    assert report.waiting["'x\\n'"] == "its name is not a rerun name"


@pytest.fixture
def as_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root, which this test needs to chown to nobody")
        pytest.skip("needs root (to chown to nobody)")


def test_a_foreign_owned_rerun_is_never_handed_out(repo, as_root):
    nobody = pwd.getpwnam("nobody")
    rerun = write_rerun(repo, "theirs", marker=True)
    for root, dirs, files in os.walk(rerun):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), nobody.pw_uid, -1)
    os.lchown(rerun, nobody.pw_uid, -1)
    store = MemoryRerunStore()
    report = one_pass(repo, MARKER, store)
    assert report.waiting == {"theirs": f"owned by nobody, not by {ME}"}
    assert gather(repo, request(MARKER)).entry("theirs").walk is None  # not even walked
    # listed as an owner, it is handed out
    allowed = RerunRule(ready="marker", marker="DONE", owners=["nobody"])
    assert one_pass(repo, allowed, MemoryRerunStore()).triggered == ["theirs"]
    # ours, but with a file planted by another account inside
    mine = write_rerun(repo, "mine", marker=True)
    os.lchown(mine / "DONE", nobody.pw_uid, -1)
    report = one_pass(repo, MARKER, store)
    assert report.waiting["mine"] == "entries owned by other accounts: nobody (1)"
    assert store.seen("demo") == set()


def test_a_processed_rerun_that_changes_is_reported_not_handed_out_again(repo, tmp_path, caplog):
    store = JsonRerunStore(tmp_path / "state.json")
    rerun = write_rerun(repo, "w1", marker=True)
    assert one_pass(repo, MARKER, store).triggered == ["w1"]
    before = store.processed("demo")["w1"]["fingerprint"]
    put(rerun, "deepCoadd-results/merged/4852/0,0/ref-4852-0,0.fits")
    with caplog.at_level(logging.ERROR, logger="dc2tasks.runs.reruns"):
        report = one_pass(repo, MARKER, store)
    assert report.triggered == []
    assert report.changed["w1"].startswith("24 -> 27 entries; newest change ")
    assert report.changed["w1"].endswith("listing (names, sizes or times) differs")
    assert f"run demo: rerun {repo}/rerun/w1 changed after it was processed: 24 -> 27 entries" in caplog.text
    assert store.processed("demo")["w1"]["fingerprint"] == before  # reported again next pass
    assert "w1" in one_pass(repo, MARKER, store).changed
    # a rewrite of the same size is a change too
    store2 = MemoryRerunStore()
    one_pass(repo, MARKER, store2)
    (rerun / "DONE").write_text("y")
    os.utime(rerun / "DONE", ns=(1, 1))
    assert one_pass(repo, MARKER, store2).changed["w1"] == "listing (names, sizes or times) differs"
    # the marker removed, the rerun replaced by a link
    (rerun / "DONE").unlink()
    assert one_pass(repo, MARKER, store).changed["w1"] == "completion marker DONE removed"
    rerun.rename(tmp_path / "moved")
    (repo / "rerun" / "w1").symlink_to(tmp_path / "moved")
    assert one_pass(repo, MARKER, store).changed["w1"] == "now a symlink"
    (repo / "rerun" / "w1").unlink()
    assert one_pass(repo, MARKER, store).gone == ["w1"]


def test_accept_takes_the_next_ready_content_as_processed(repo, tmp_path):
    store = JsonRerunStore(tmp_path / "state.json")
    rerun = write_rerun(repo, "w1", marker=True)
    one_pass(repo, MARKER, store)
    put(rerun, "extra")
    assert "w1" in one_pass(repo, MARKER, store).changed
    assert store.accept("demo", "w1") and not store.accept("demo", "nope")
    (rerun / "DONE").unlink()  # being rewritten: no baseline until it is complete again
    report = one_pass(repo, MARKER, store)
    assert report.changed == {} and report.baselined == [] and report.triggered == []
    put(rerun, "DONE")
    report = one_pass(repo, MARKER, store)
    assert report.baselined == ["w1"] and report.triggered == []
    assert one_pass(repo, MARKER, store).changed == {}


def test_a_changed_processed_rerun_in_its_quiet_period_is_reported(repo, tmp_path):
    store = MemoryRerunStore()
    rerun = write_rerun(repo, "w1")
    age(rerun, 3)
    assert one_pass(repo, QUIET, store).triggered == ["w1"]
    put(rerun, "late.fits")
    assert one_pass(repo, QUIET, store).changed["w1"].endswith("after it was processed")


def test_too_many_entries_are_not_examined(repo):
    write_rerun(repo, "w1", marker=True)
    rule = RerunRule(ready="marker", marker="DONE", max_entries=5)
    report = one_pass(repo, rule, MemoryRerunStore())
    assert report.waiting == {"w1": "more than 5 entries: raise reruns.max_entries to examine it"}


def _facts_without_time(listing) -> dict:
    data = listing.model_dump()
    data.pop("now_ns")
    return data


def test_the_remote_listing_carries_the_same_facts(repo, tmp_path):
    """The path the watcher takes for Slurm runs: `dc2 reruns REPO --facts ...` through a command
    runner (here the local subprocess transport: the same argv as over SSH), its JSON parsed."""
    write_rerun(repo, "done", marker=True)
    write_rerun(repo, "writing")
    write_rerun(repo, "skipped", marker=True)
    (repo / "rerun" / "linked").symlink_to(repo / "rerun" / "done")
    (tmp_path / "visits.txt").write_text("1000\n1001\n")
    req = request(MARKER, own_rerun="skipped", visits=(), visit_file=str(tmp_path / "visits.txt"))
    runner = SubprocessTransport()
    remote = list_facts(str(repo), req, runner, (DC2,))
    assert _facts_without_time(remote) == _facts_without_time(gather(repo, req))
    assert runner.counter.count == 1
    assert remote.account == ME
    assert remote.entry("linked").kind == "link"
    assert remote.entry("writing").marker == "absent" and remote.entry("writing").walk is None
    assert remote.entry("skipped").walk is None
    assert remote.entry("done").walk.digest is not None
    with pytest.raises(InputError, match="repository not found"):
        list_facts(str(tmp_path / "nope"), req, runner, (DC2,))
    with pytest.raises(InputError, match="must be absolute"):
        list_facts("relative/repo", req, runner, (DC2,))


def test_a_listing_is_parsed_strictly(repo):
    text = gather(repo, request(MARKER)).model_dump_json()
    data = json.loads(text)
    parse_listing(text, "here")
    cases = (({**data, "extra": 1}, "extra"), ({**data, "now_ns": "1"}, "now_ns"),
             ({**data, "format": "other/1"}, "format"), ({**data, "rerun_dir": "link?"}, "rerun_dir"))
    for bad, field in cases:
        expected = rf"^here: not a rerun listing \(dc2tasks-rerun-facts/1\): {field}:"
        with pytest.raises(InputError, match=expected):
            parse_listing(json.dumps(bad), "here")
    with pytest.raises(InputError, match="not a rerun listing"):
        parse_listing("Welcome to NERSC\n" + text, "here")


def test_a_damaged_store_is_refused_not_reset(tmp_path):
    state = tmp_path / "reruns.json"
    state.write_text("{not json")
    with pytest.raises(InputError, match="not a rerun store"):
        JsonRerunStore(state).claim("demo", ["a"])
    assert state.read_text() == "{not json"


def test_memory_store_has_the_same_contract():
    store = MemoryRerunStore({"demo": ["a"]})
    assert store.claim("demo", ["a", "b", "b", "c"]) == ["b", "c"]
    assert store.claim("demo", ["a", "b", "c"]) == []
    assert store.seen("demo") == {"a", "b", "c"}


# One watcher process: waits for the start file so all of them claim at once, prints what it got.
_CLAIMER = """
import json, os, sys, time
from dc2tasks.runs import JsonRerunStore
state, start, reruns = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
while not os.path.exists(start):
    time.sleep(0.005)
fps = {r: {"digest": r} for r in reruns}
print(json.dumps(JsonRerunStore(state).claim("demo", reruns, fingerprints=fps)))
"""


def test_overlapping_watchers_hand_out_each_rerun_once(tmp_path):
    """Sixteen watcher processes (fresh interpreters, as overlapping Airflow tasks are) claim the same
    40 reruns at the same moment, half in each order."""
    state, start = str(tmp_path / "reruns.json"), tmp_path / "start"
    reruns = [f"r{i:03d}" for i in range(40)]
    orders = [reruns] * 8 + [list(reversed(reruns))] * 8
    procs = [
        subprocess.Popen([sys.executable, "-c", _CLAIMER, state, str(start), json.dumps(order)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for order in orders
    ]
    handed: list[str] = []
    try:
        start.touch()
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            handed += json.loads(out)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert sorted(handed) == reruns  # every rerun exactly once over 16 concurrent claims
    processed = JsonRerunStore(state).processed("demo")
    assert set(processed) == set(reruns)
    assert all(processed[r]["fingerprint"] == {"digest": r} for r in reruns)

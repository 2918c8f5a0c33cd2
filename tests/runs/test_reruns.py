"""Rerun discovery and memory: each new rerun is handed out once, across restarts and overlapping runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dc2tasks.products.errors import InputError
from dc2tasks.runs import JsonRerunStore, MemoryRerunStore, list_reruns, new_reruns
from dc2tasks.sample import SampleConfig, make_sample_repo
from dc2tasks.sample.layout import repository_cfg
from dc2tasks.slurm.commands import Command, CommandResult
from dc2tasks.slurm.transports.local import SubprocessTransport


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A real sample repository: rerun/coadd (parent) and rerun/multiband (with ref catalogs)."""
    root = tmp_path_factory.mktemp("reruns") / "repo"
    make_sample_repo(root, SampleConfig(patches=["0,0"], objects_per_patch=5, ref_width=100, forced_width=60))
    return root


def add_rerun(repo: Path, name: str, cfg: bool = True) -> None:
    (repo / "rerun" / name).mkdir(parents=True)
    if cfg:
        (repo / "rerun" / name / "repositoryCfg.yaml").write_text(repository_cfg("x", ["../coadd"]))


def copy_repo(repo: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "repo"
    shutil.copytree(repo / "rerun", dst / "rerun")
    return dst


def test_lists_the_reruns_with_a_repository_cfg(repo, tmp_path):
    r = copy_repo(repo, tmp_path)
    assert list_reruns(r).reruns == ["coadd", "multiband"]
    add_rerun(r, "not-a-rerun", cfg=False)
    add_rerun(r, "bad name;rm")
    (r / "rerun" / "stray-file").write_text("")
    listing = list_reruns(r)
    assert listing.reruns == ["coadd", "multiband"]
    assert listing.skipped == ["bad name;rm"]


def test_listing_through_a_command_runner_equals_the_local_one(repo, tmp_path):
    """The code path the watcher uses over SSH, here with the local subprocess transport (real find)."""
    r = copy_repo(repo, tmp_path)
    add_rerun(r, "w_2019_10+fix")
    add_rerun(r, "bad name;rm")
    runner = SubprocessTransport()
    remote = list_reruns(str(r), runner)
    assert remote == list_reruns(r)
    assert remote.reruns == ["coadd", "multiband", "w_2019_10+fix"]
    assert runner.counter.count == 1  # one command when the listing works


def test_missing_repository_is_an_error_and_missing_rerun_dir_is_empty(tmp_path):
    with pytest.raises(InputError, match=f"^{tmp_path / 'nope'}: repository not found"):
        list_reruns(tmp_path / "nope")
    with pytest.raises(InputError, match="repository not found on the remote host"):
        list_reruns(str(tmp_path / "nope"), SubprocessTransport())
    (tmp_path / "empty").mkdir()
    assert list_reruns(tmp_path / "empty").reruns == []
    assert list_reruns(str(tmp_path / "empty"), SubprocessTransport()).reruns == []
    with pytest.raises(InputError, match="must be absolute"):
        list_reruns("relative/repo", SubprocessTransport())


class RecordingRunner:
    """A runner whose command fails for another reason: the error must say so, not look like 'no reruns'."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def run(self, cmd: Command) -> CommandResult:
        self.calls.append(cmd.argv)
        if cmd.argv[0] == "find":
            return CommandResult(1, b"", b"find: '/r/rerun/x': Permission denied\n")
        return CommandResult(0, b"", b"")


def test_a_listing_failure_is_reported():
    runner = RecordingRunner()
    with pytest.raises(InputError, match="cannot list reruns: find: '/r/rerun/x': Permission denied"):
        list_reruns("/r", runner)
    assert runner.calls[0][:3] == ("find", "-L", "/r/rerun")


def test_each_new_rerun_once_and_never_again(repo, tmp_path):
    r = copy_repo(repo, tmp_path)
    state = tmp_path / "state" / "reruns.json"
    store = JsonRerunStore(state)
    assert new_reruns("demo", r, store, ignore=["coadd"]) == ["multiband"]
    assert new_reruns("demo", r, store, ignore=["coadd"]) == []
    add_rerun(r, "w_2019_10")
    add_rerun(r, "w_2019_11")
    assert new_reruns("demo", r, store, ignore=["coadd"]) == ["w_2019_10", "w_2019_11"]
    assert new_reruns("demo", r, store, ignore=["coadd"]) == []
    # another run watching the same repository has its own memory
    assert new_reruns("other", r, store) == ["coadd", "multiband", "w_2019_10", "w_2019_11"]
    # a restart: a new store object on the same file remembers everything
    again = JsonRerunStore(state)
    assert again.seen("demo") == {"multiband", "w_2019_10", "w_2019_11"}
    assert new_reruns("demo", r, again, ignore=["coadd"]) == []
    add_rerun(r, "w_2019_12")
    assert new_reruns("demo", r, again, info={"dag_run_id": "rerun__w_2019_12"}) == ["coadd", "w_2019_12"]
    saved = json.loads(state.read_text())["runs"]["demo"]
    assert saved["w_2019_12"]["dag_run_id"] == "rerun__w_2019_12"
    assert saved["w_2019_12"]["at"].endswith("+00:00")


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
print(json.dumps(JsonRerunStore(state).claim("demo", reruns)))
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
    assert JsonRerunStore(state).seen("demo") == set(reruns)

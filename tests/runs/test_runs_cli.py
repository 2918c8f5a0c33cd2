"""`dc2 run-config validate|show` and `dc2 reruns` through an argparse parser."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from dc2tasks.cli import runs as cli

RUNS = Path(__file__).resolve().parents[2] / "dags" / "runs"


def dc2(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dc2")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_validate_the_shipped_directory(capsys):
    assert dc2("run-config", "validate", str(RUNS)) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out] == [
        "demo",
        "run1.1p",
        "run1.2i",
        "run1.2p_v3",
        "run1.2p_v4",
        "run1.2p_v4_archive",
    ]


def test_validate_reports_the_bad_file_and_field(tmp_path, capsys):
    for f in RUNS.glob("*.yaml"):
        shutil.copy(f, tmp_path)
    bad = tmp_path / "run1.2i.yaml"
    bad.write_text(bad.read_text().replace('merge_tract: "6:00:00"', 'merge_tract: "forever"'))
    assert dc2("run-config", "validate", str(tmp_path)) == 2
    captured = capsys.readouterr()
    assert (
        captured.err
        == f"{bad}: slurm.time.merge_tract: 'forever' is not a Slurm time (M, M:S, H:M:S, D-H, D-H:M:S)\n"
    )
    assert len(captured.out.splitlines()) == len(list(RUNS.glob("*.yaml"))) - 1  # all but the bad one
    assert dc2("run-config", "validate", str(bad)) == 2


def test_show_prints_the_hash_and_the_params(capsys):
    from dc2tasks.runs import config_hash, load_run_config

    assert dc2("run-config", "show", str(RUNS / "run1.1p.yaml"), "--params") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config_hash"] == config_hash(load_run_config(RUNS / "run1.1p.yaml"))
    assert shown["run"]["pixel_scale"] == 0.185
    assert shown["params"]["properties"]["tracts"]["items"]["enum"][0] == 5066


def test_reruns_lists_and_prints_facts(tmp_path, capsys):
    repo = tmp_path / "repo"
    for name in ("a", "b"):
        (repo / "rerun" / name).mkdir(parents=True)
        (repo / "rerun" / name / "repositoryCfg.yaml").write_text("_parents: []\n")
    (repo / "rerun" / "c").symlink_to(repo / "rerun" / "a")
    (repo / "rerun" / "a" / "DONE").write_text("")
    assert dc2("reruns", str(repo)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[:2] for ln in lines[1:]] == [["a", "dir"], ["b", "dir"], ["c", "link"]]
    assert dc2("reruns", str(repo), "--facts", "--marker", "DONE", "--own-rerun", "b") == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["format"] == "dc2tasks-rerun-facts/1"
    assert [(e["name"], e["marker"], e["walk"] is not None) for e in facts["reruns"]] == [
        ("a", "file", True), ("b", "absent", False), ("c", None, False)]


def test_accept_needs_state_and_run(tmp_path, capsys):
    from dc2tasks.runs import JsonRerunStore

    state = tmp_path / "state.json"
    JsonRerunStore(state).claim("demo", ["w1"], fingerprints={"w1": {"digest": "x"}})
    assert dc2("reruns", "--state", str(state), "--run", "demo", "--accept", "w1") == 0
    assert "rerun w1 accepted" in capsys.readouterr().out
    assert "fingerprint" not in JsonRerunStore(state).processed("demo")["w1"]
    assert dc2("reruns", "--state", str(state), "--run", "demo", "--accept", "w2") == 2
    assert "run demo has no processed rerun w2" in capsys.readouterr().err
    assert dc2("reruns", "--accept", "w1") == 2
    assert "--accept needs --state and --run" in capsys.readouterr().err

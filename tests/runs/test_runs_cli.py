"""`dc2 run-config validate|show` and `dc2 reruns` through an argparse parser."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from dc2tasks.runs import cli

RUNS = Path(__file__).resolve().parents[2] / "dags" / "runs"


def dc2(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dc2")
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_validate_the_shipped_directory(capsys):
    assert dc2("run-config", "validate", str(RUNS)) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out] == ["demo", "run1.1p", "run1.2i", "run1.2p_v3", "run1.2p_v4"]


def test_validate_reports_the_bad_file_and_field(tmp_path, capsys):
    for f in RUNS.glob("*.yaml"):
        shutil.copy(f, tmp_path)
    bad = tmp_path / "run1.2i.yaml"
    bad.write_text(bad.read_text().replace('merge_tract: "12:00:00"', 'merge_tract: "forever"'))
    assert dc2("run-config", "validate", str(tmp_path)) == 2
    captured = capsys.readouterr()
    assert (
        captured.err
        == f"{bad}: slurm.time.merge_tract: 'forever' is not a Slurm time (M, M:S, H:M:S, D-H, D-H:M:S)\n"
    )
    assert len(captured.out.splitlines()) == 4
    assert dc2("run-config", "validate", str(bad)) == 2


def test_show_prints_the_hash_and_the_params(capsys):
    from dc2tasks.runs import config_hash, load_run_config

    assert dc2("run-config", "show", str(RUNS / "run1.1p.yaml"), "--params") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config_hash"] == config_hash(load_run_config(RUNS / "run1.1p.yaml"))
    assert shown["run"]["pixel_scale"] == 0.185
    assert shown["params"]["properties"]["tracts"]["items"]["enum"][0] == 5066


def test_reruns_once_with_state(tmp_path, capsys):
    repo = tmp_path / "repo"
    for name in ("a", "b"):
        (repo / "rerun" / name).mkdir(parents=True)
        (repo / "rerun" / name / "repositoryCfg.yaml").write_text("_parents: []\n")
    assert dc2("reruns", str(repo)) == 0
    assert capsys.readouterr().out == "a\nb\n"
    state = str(tmp_path / "state.json")
    assert dc2("reruns", str(repo), "--state", state, "--run", "demo", "--ignore", "a") == 0
    assert capsys.readouterr().out == "b\n"
    assert dc2("reruns", str(repo), "--state", state, "--run", "demo") == 0
    assert capsys.readouterr().out == "a\n"
    assert dc2("reruns", str(repo), "--state", state, "--run", "demo") == 0
    assert capsys.readouterr().out == ""
    assert dc2("reruns", str(repo), "--state", state) == 2
    assert "--state needs --run" in capsys.readouterr().err

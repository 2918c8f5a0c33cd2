"""The `dc2` command line people and job scripts call: every subcommand and each one's options.

The table is what the command offered before it became a package; a lost subcommand or option
fails here (the help prose may change, the option strings may not).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from dc2tasks.catalogue import CATALOGUE
from dc2tasks.cli import build_parser, command_module, main, product_steps

BANDS_ARE = "bands are distinct letters of ugrizy,"
PATCH_IS = "is not a patch (x,y with single-digit x and y, e.g. 0,1)"

# subcommand path -> positionals (by metavar or name) and option strings ("-o/--output-dir")
COMMANDS = {
    "": "--version -v/--verbose -q/--quiet",
    "demo": "--workdir --seed -j/--jobs --no-airflow",
    "dia-object": "repo --rerun --tract --dia-source-dir -o/--output-dir --bands --statistics",
    "dia-source": (
        "repo --rerun --visits --visit-file --array-index --array-count -o/--output-dir "
        "--radius --allow-missing-detectors --force"
    ),
    "dpdd": "files -o/--output-dir --pixel-scale --schema",
    "dpdd-columns": "--schema",
    "forced-source": (
        "repo --rerun --visits --visit-file --array-index --array-count -o/--output-dir "
        "--allow-missing-detectors --force"
    ),
    "gcr-config": "--product --run --base-dir --config-base-dir --name --pixel-scale -o/--output-dir",
    "inventory": "repo --rerun --products --tracts --visits --visit-file --bands -o/--output --json",
    "install": (
        "SOURCE --central --product --group --manifest --catalog-base-dir --jobs --mode "
        "--group-managed --lock-timeout --dry-run --force --no-check --qa-mode --approved-by --json"
    ),
    "manifest": (
        "DIR --catalog-config --group --run-config --run --run-config-hash --input --jobs --inventory"
    ),
    "merge-parquet": "files -o/--output --sort",
    "merge-tract": "repo --rerun --tract --patches --bands -o/--output-dir -j/--jobs",
    "qa": (
        "PRODUCT_DIR --product --against --truth --thresholds --tracts --visits -o/--output --enforce --json"
    ),
    "object-pipeline": "repo --rerun --workdir --run --tract --bands --pixel-scale -j/--jobs",
    "reruns": (
        "REPO --facts --marker --quiet-hours --owner --max-entries --own-rerun --product "
        "--tract --visit --visit-file --state --run --accept"
    ),
    "run-config": "",
    "run-config show": "FILE --params",
    "run-config validate": "PATH",
    "sample-repo": (
        "PATH --seed --tracts --patches --patch-grid --objects-per-patch --bands --schema "
        "--camera --calib-era --zero-point --zp-jitter --pixel-scale --ref-width "
        "--forced-width --missing-band --missing-patch --rerun --visits --detectors "
        "--detector-pixels --spurious-fraction --variable-fraction --no-dia --src-width "
        "--forced-src-width --dia-src-width --visit-list --no-truth --overwrite"
    ),
    "serve": "--workdir --port --seed --timeout --share-network",
    "slurm": "",
    "slurm sweep": "--conn --grace --dry-run --json",
    "source": (
        "repo --rerun --visits --visit-file --array-index --array-count -o/--output-dir "
        "--objects --radius --allow-missing-detectors --force"
    ),
    "trim": "files -o/--output-dir --schema",
}


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def _arguments(parser: argparse.ArgumentParser) -> tuple[list[str], set[str]]:
    positionals, options = [], set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        if action.option_strings:
            options.add("/".join(action.option_strings))
        else:
            positionals.append(action.metavar or action.dest)
    return positionals, options


def test_every_subcommand_keeps_its_options():
    found = dict(_parsers(build_parser()))
    assert sorted(found) == sorted(COMMANDS)
    for path, expected in COMMANDS.items():
        tokens = expected.split()
        want_options = {t for t in tokens if t.startswith("-")}
        want_positionals = [t for t in tokens if not t.startswith("-")]
        assert _arguments(found[path]) == (want_positionals, want_options), path


def test_every_command_runs_a_function():
    found = dict(_parsers(build_parser()))
    for path in COMMANDS:
        if path:
            assert callable(found[path.split()[0]].get_default("func")), path


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_help_exits_0_and_shows_no_none_default(path, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*path.split(), "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "usage: dc2" in text


def test_defaults_that_are_values_are_still_shown(capsys):
    with pytest.raises(SystemExit):
        main(["reruns", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 1000000)" in text and "(default: [])" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["merge-tract", "r", "-o", "o", "--bands", "gx"], f"argument --bands: {BANDS_ARE} not 'gx'"),
        (
            ["merge-tract", "r", "-o", "o", "--patches", "0,1", "1;1"],
            f"argument --patches: '1;1' {PATCH_IS}",
        ),
        (
            ["object-pipeline", "r", "--workdir", "w", "--bands", "gg"],
            f"argument --bands: {BANDS_ARE} not 'gg'",
        ),
        (
            ["dia-object", "r", "--dia-source-dir", "d", "-o", "o", "--bands", ""],
            f"argument --bands: {BANDS_ARE} not ''",
        ),
        (["sample-repo", "p", "--bands", "gri,x"], f"argument --bands: {BANDS_ARE} not 'gri,x'"),
        (["sample-repo", "p", "--missing-patch", "10,1"], f"argument --missing-patch: '10,1' {PATCH_IS}"),
        (["sample-repo", "p", "--missing-band", "g@1"], f"argument --missing-band: '1' {PATCH_IS}"),
        (
            ["sample-repo", "p", "--tracts", "+4850"],
            "argument --tracts: '+4850' is not a non-negative integer",
        ),
        (
            ["source", "r", "-o", "o", "--objects", "x", "--radius", "0"],
            "argument --radius: the radius must be positive",
        ),
        (
            ["forced-source", "r", "-o", "o", "--array-index", "-1"],
            "argument --array-index: '-1' is not a non-negative",
        ),
    ],
)
def test_bad_values_exit_2_naming_the_option_and_the_value(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_band_and_patch_values_that_job_scripts_and_people_pass():
    parser = build_parser()
    args = parser.parse_args(["merge-tract", "r", "-o", "o", "--bands", "ugrizy", "--patches", "0,0", "6,7"])
    assert (args.bands, args.patches) == (list("ugrizy"), ["0,0", "6,7"])
    assert parser.parse_args(["merge-tract", "r", "-o", "o", "--bands", "g,r,i"]).bands == ["g", "r", "i"]
    dia = parser.parse_args(["dia-object", "r", "--dia-source-dir", "d", "-o", "o", "--bands", "zy"])
    assert dia.bands == ["z", "y"]
    sample = parser.parse_args(["sample-repo", "p", "--bands", "gri", "--patches", "3,3"])
    assert (sample.bands, sample.patches) == (["g", "r", "i"], ["3,3"])


def test_the_product_subcommands_are_the_catalogues():
    commands = {name: sub for name, sub in _subcommands(build_parser())}
    helps = dict(_helps(build_parser()))
    for product in CATALOGUE:
        assert product.command in commands, product.name
        assert helps[product.command] == product.doc
        assert commands[product.command].get_default("func") is not None
    # gcr-config offers exactly the products a GCRCatalogs catalog serves
    gcr = next(a for a in commands["gcr-config"]._actions if a.dest == "product")
    assert sorted(gcr.choices) == sorted(p.name for p in CATALOGUE if p.catalog is not None)


def test_a_product_added_to_a_catalogue_is_a_subcommand():
    extra = dataclasses.replace(
        CATALOGUE["merged_dpdd_object"], name="merged_extra", command="merge-extra", doc="one more merge"
    )
    parser = argparse.ArgumentParser(prog="dc2")
    product_steps.register(parser.add_subparsers(dest="command"), [*CATALOGUE, extra])
    args = parser.parse_args(["merge-extra", "a.parquet", "-o", "out.parquet", "--sort"])
    assert (args.command, args.sort, args.output) == ("merge-extra", True, Path("out.parquet"))
    assert dict(_helps(parser))["merge-extra"] == "one more merge"


@pytest.mark.parametrize("cli", ["dc2tasks.cli.objects", "dc2tasks.cli.objects:nothing", ":trim_args"])
def test_a_catalogue_entry_naming_no_function_is_refused_with_its_name(cli):
    bad = dataclasses.replace(CATALOGUE["trim_object"], cli=cli)
    with pytest.raises(ValueError, match=f"catalogue: trim_object: cli '{cli}' is not 'module:function'"):
        product_steps.add_arguments_of(bad)


def _subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _helps(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from ((a.dest, a.help) for a in action._choices_actions)


def test_each_subcommand_parses_alike_with_its_module_alone():
    """`dc2 COMMAND` builds its parser from the module the table names: that module registers
    COMMAND with the same options and help as in the whole parser."""
    whole = dict(_subcommands(build_parser()))
    helps = dict(_helps(build_parser()))
    assert sorted(n for n in whole if command_module(n) is None) == []
    for name, sub in whole.items():
        alone = build_parser(name)
        found = dict(_subcommands(alone))
        assert list(found) == [n for n in whole if command_module(n) == command_module(name)], name
        assert _arguments(found[name]) == _arguments(sub), name
        assert dict(_helps(alone))[name] == helps[name]

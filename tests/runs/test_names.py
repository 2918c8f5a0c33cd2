"""Every name that becomes a path is checked whole (fullmatch): no trailing newline, no leading '-',
no '..' or '/'; the same declaration serves the run file, the params, the CLIs and the installer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dc2tasks import names
from dc2tasks.cli import main

BAD_NAMES = ["x\n", "-x", "..", ".", "a/b", "", " x", "x y", "x\x00"]


@pytest.mark.parametrize("pattern", [names.RUN, names.RERUN, names.PRODUCT, names.FILE_PART, names.ACCOUNT])
@pytest.mark.parametrize("value", BAD_NAMES)
def test_bad_names_are_refused_by_every_pattern(pattern, value):
    assert not pattern.fullmatch(value)
    assert not re.search(pattern.json_schema_pattern, value)
    with pytest.raises(ValueError, match=rf"^field: {re.escape(repr(value))} is not a "):
        pattern.check(value, "field")


@pytest.mark.parametrize("value", ["4850\n", "-1", "+1", " 1", "1_000", "", "4850 ", "0x10", "١٢"])
def test_numbers_are_plain_digits(value):
    assert not names.NUMBER.fullmatch(value)


def test_good_names_pass():
    assert names.RUN.fullmatch("run1.2p_v4")
    assert names.RERUN.fullmatch("w_2019_10+fix") and names.RERUN.fullmatch("coadd-v4")
    assert names.PRODUCT.fullmatch("merged_dpdd_object")
    assert names.NUMBER.fullmatch("4850")
    assert names.FILE_PART.fullmatch("dc2_object_run1.2p_v4")


def test_the_patterns_are_declared_once():
    """The run file model, the listing, the installer and the CLIs use these very objects."""
    from dc2tasks.install import layout, manifest

    assert layout.PRODUCT_RE is names.PRODUCT.regex
    assert manifest._NAME_PART_RE is names.FILE_PART.regex
    package = Path(names.__file__).parent
    source = "\n".join(p.read_text() for p in package.rglob("*.py") if p.name != "names.py")
    for pattern in (names.RUN, names.RERUN, names.PRODUCT, names.FILE_PART):
        assert pattern.body not in source, pattern.what


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    try:
        rc = main(list(argv))
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["merge-tract", "REPO", "--rerun", "multiband\n", "-o", "out"],
         r"argument --rerun: 'multiband\n' is not a rerun name"),
        (["merge-tract", "REPO", "--rerun=-rf", "-o", "out"], "argument --rerun: '-rf' is not a rerun name"),
        (["merge-tract", "REPO", "--rerun", "../x", "-o", "out"],
         "argument --rerun: '../x' is not a rerun name"),
        (["merge-tract", "REPO", "--tract", "4850\n", "-o", "out"],
         r"argument --tract: '4850\n' is not a non-negative integer"),
        (["source", "REPO", "--rerun", "a/b", "--visits", "1", "--objects", "o", "-o", "out"],
         "argument --rerun: 'a/b' is not a rerun name"),
        (["source", "REPO", "--visits", "1_000", "--objects", "o", "-o", "out"],
         "argument --visits: '1_000' is not a non-negative integer"),
        (["gcr-config", "--product", "object", "--run", "demo\n", "--base-dir", "b", "-o", "o"],
         r"argument --run: 'demo\n' is not a run name"),
        (["gcr-config", "--product", "object", "--run", "demo", "--name", "../x", "--base-dir", "b",
          "-o", "o"],
         "argument --name: '../x' is not a plain file name"),
        (["install", "{tmp}", "--central", "{tmp}", "--product=-object"],
         "dc2 install: error: product '-object': lower-case letters"),
        (["install", "{tmp}", "--central", "{tmp}", "--product", "object\n"],
         r"dc2 install: error: product 'object\n': lower-case letters"),
        (["install", "{tmp}", "--central", "{tmp}", "--product", ".."],
         "dc2 install: error: product '..': lower-case letters"),
        (["manifest", "DIR", "--run", "a/b"], "argument --run: 'a/b' is not a run name"),
        (["reruns", "--state", "s", "--run", "demo", "--accept", "w1\n"],
         r"argument --accept: 'w1\n' is not a rerun name"),
        (["reruns", "REPO", "--facts", "--marker", "../DONE"],
         "argument --marker: '../DONE' is not a plain file"),
        (["reruns", "REPO", "--facts", "--owner=-x"], "argument --owner: '-x' is not a Unix account"),
    ],
)  # fmt: skip
def test_the_cli_refuses_bad_names_with_the_option_named(capsys, tmp_path, argv, message):
    rc, err = run_cli(capsys, *(a.format(tmp=tmp_path) for a in argv))
    assert rc == 2
    assert message in err

"""The job model: golden sbatch scripts, validation of every field, quoting, scaling."""

from __future__ import annotations

import difflib
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from dc2tasks.slurm import ArraySpec, SlurmJob, command_body, expand_log_path
from dc2tasks.slurm.localslurm.emulator import parse_directives

GOLDEN = Path(__file__).parent / "golden"

NERSC = SlurmJob(
    script=command_body(["dc2", "object", "--repo", "/global/cfs/cdirs/lsst/dc2/run2.2i", "--tract", "3828"]),
    name="dc2-run2.2i__object__3828",
    account="m1727",
    qos="regular",
    partition="cpu",
    constraint="cpu",
    time_limit="2:30:00",
    nodes=1,
    ntasks=1,
    cpus_per_task=32,
    memory="64G",
    image="docker:lsstdesc/dc2-production:1.2.3",
    licenses=("cfs", "scratch:2"),
    output="/pscratch/sd/d/dc2/logs/%x-%j.out",
    error="/pscratch/sd/d/dc2/logs/%x-%j.err",
    workdir="/pscratch/sd/d/dc2/work",
    environment={"OMP_NUM_THREADS": "32", "DC2_RUN": "run2.2i"},
    dependencies=("afterok:123:124",),
    comment="dc2:try=2",
    exclude=("nid001234",),
)

CASES = {
    "minimal": SlurmJob(script="echo hello\n", name="hello"),
    "nersc_full": NERSC,
    "array_throttle": SlurmJob(
        script='dc2 source --visit-index "$SLURM_ARRAY_TASK_ID"\n',
        name="dc2-src", array="0-999%50", time_limit=30, memory=4000,
        output="logs/src_%A_%a.out",
    ),
    "resubmit_failed": SlurmJob(
        script="dc2 source --visit-index \"$SLURM_ARRAY_TASK_ID\"\n", name="dc2-src",
        array=ArraySpec.of([17, 3, 4, 5, 250], throttle=50), time_limit="1-00:00:00",
    ),
    "hostile_values": SlurmJob(
        script=command_body(["echo", "; rm -rf /", "$(touch pwned)", "`id`", "a'b\"c", "line1\nline2"]),
        name="hostile",
        environment={"EVIL": "$(touch pwned); rm -rf / `id` 'quoted' \"dq\"\nnext line", "EMPTY": ""},
    ),
    "retry_scaled": NERSC.scaled(time_factor=1.5, mem_factor=2).excluding(["nid000042", "nid001234"]),
}


def diff_message(name: str, expected: str, actual: str) -> str:
    diff = "".join(difflib.unified_diff(
        expected.splitlines(keepends=True), actual.splitlines(keepends=True),
        fromfile=f"golden/{name}.sbatch", tofile="rendered",
    ))
    return f"rendered script differs from golden/{name}.sbatch " \
           f"(DC2_UPDATE_GOLDEN=1 rewrites it):\n{diff}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_script(name: str) -> None:
    path = GOLDEN / f"{name}.sbatch"
    actual = CASES[name].render()
    if os.environ.get("DC2_UPDATE_GOLDEN") == "1":
        path.write_text(actual)
    assert path.exists(), f"missing golden file {path} (DC2_UPDATE_GOLDEN=1 creates it)"
    expected = path.read_text()
    if actual != expected:
        pytest.fail(diff_message(name, expected, actual))


def test_golden_diff_is_readable() -> None:
    msg = diff_message("x", "#SBATCH --time=01:00:00\necho\n", "#SBATCH --time=02:00:00\necho\n")
    assert "-#SBATCH --time=01:00:00" in msg and "+#SBATCH --time=02:00:00" in msg


REJECT = [
    ("name", {"name": "two\nlines"}),
    ("name", {"name": "has space"}),
    ("name", {"name": "a,b"}),
    ("name", {"name": "x;rm -rf /"}),
    ("name", {"name": "$(id)"}),
    ("name", {"name": ""}),
    ("name", {"name": "allocation"}),
    ("account", {"account": "m1727\n#SBATCH --uid=0"}),
    ("qos", {"qos": "regular premium"}),
    ("partition", {"partition": "cpu'"}),
    ("constraint", {"constraint": "cpu gpu"}),
    ("time_limit", {"time_limit": "abc"}),
    ("time_limit", {"time_limit": "1:2:3:4"}),
    ("time_limit", {"time_limit": "-5"}),
    ("time_limit", {"time_limit": 0}),
    ("time_limit", {"time_limit": timedelta(seconds=-1)}),
    ("nodes", {"nodes": 0}),
    ("ntasks", {"ntasks": -1}),
    ("cpus_per_task", {"cpus_per_task": 1.5}),
    ("cpus_per_task", {"cpus_per_task": True}),
    ("memory", {"memory": -1}),
    ("memory", {"memory": "-5G"}),
    ("memory", {"memory": 0}),
    ("memory", {"memory": "lots"}),
    ("array", {"array": "5-1"}),
    ("array", {"array": "0-"}),
    ("array", {"array": "1-3%x"}),
    ("array", {"array": ""}),
    ("array", {"array": "0-3;id"}),
    ("image", {"image": "docker:x y"}),
    ("licenses", {"licenses": "scratch"}),
    ("licenses", {"licenses": ("scratch:two",)}),
    ("output", {"output": "/tmp/a b.out"}),
    ("output", {"output": "$(id).out"}),
    ("error", {"error": "x\"y"}),
    ("workdir", {"workdir": "/tmp/`id`"}),
    ("environment", {"environment": {"A-B": "x"}}),
    ("environment", {"environment": {"1A": "x"}}),
    ("environment", {"environment": {"A": "x\0y"}}),
    ("dependencies", {"dependencies": ("afterok:abc",)}),
    ("dependencies", {"dependencies": ("afterok:1;rm",)}),
    ("dependencies", {"dependencies": "afterok:1"}),
    ("comment", {"comment": "two words"}),
    ("comment", {"comment": "a|b"}),
    ("comment", {"comment": "a\n#SBATCH --x"}),
    ("exclude", {"exclude": ("nid1 nid2",)}),
    ("script", {"script": "echo \0"}),
]


@pytest.mark.parametrize(("field", "kwargs"), REJECT, ids=[f"{f}-{i}" for i, (f, _) in enumerate(REJECT)])
def test_unsafe_values_are_rejected_naming_the_field(field: str, kwargs: dict) -> None:
    base = {"script": "true\n", "name": "ok"}
    with pytest.raises(ValueError, match=rf"^{field}"):
        SlurmJob(**{**base, **kwargs})


def test_normalisation() -> None:
    j = SlurmJob(script="true", name="n", time_limit="1-2", memory="1.5G", array="1,3,5-7%2")
    assert j.time_limit == timedelta(days=1, hours=2)
    assert j.memory == 1536
    assert j.array == ArraySpec((1, 3, 5, 6, 7), 2)
    assert "#SBATCH --time=1-02:00:00" in j.render()
    assert "#SBATCH --mem=1536M" in j.render()
    assert j.render().endswith("true\n")


@pytest.mark.parametrize(("text", "indices", "rendered"), [
    ("0-19%4", tuple(range(20)), "0-19%4"),
    ("1,3,5-7", (1, 3, 5, 6, 7), "1,3,5-7"),
    ("0-15:4", (0, 4, 8, 12), "0,4,8,12"),
    ("7", (7,), "7"),
    ("5,1,3,2", (1, 2, 3, 5), "1-3,5"),
])
def test_array_spec(text: str, indices: tuple[int, ...], rendered: str) -> None:
    spec = ArraySpec.parse(text)
    assert spec.indices == indices
    assert spec.render() == rendered
    assert ArraySpec.parse(spec.render()) == spec


def test_time_formats() -> None:
    cases = {"90": 90 * 60, "5:30": 330, "1:00:00": 3600, "2-3": 2 * 86400 + 3 * 3600,
             "1-0:30": 86400 + 1800, "1-1:1:1": 86400 + 3661}
    for text, seconds in cases.items():
        assert SlurmJob(script="", name="t", time_limit=text).time_limit == timedelta(seconds=seconds)


def test_scaled_and_excluding() -> None:
    j = SlurmJob(script="true", name="n", time_limit="00:10:00", memory=1000, exclude=("a",))
    s = j.scaled(time_factor=1.5, mem_factor=1.5)
    assert (s.time_limit, s.memory) == (timedelta(minutes=15), 1500)
    assert j.scaled(time_factor=2).memory == 1000  # only the asked-for limit changes
    short = SlurmJob(script="true", name="n", time_limit="0:30").scaled(time_factor=1.2)
    assert short.time_limit == timedelta(minutes=1)  # whole minutes, rounded up
    assert SlurmJob(script="true", name="n").scaled(2, 2).time_limit is None
    assert j.excluding(["b", "a", "c"]).exclude == ("a", "b", "c")
    with pytest.raises(ValueError, match="time_factor"):
        j.scaled(time_factor=0)
    with pytest.raises(ValueError, match="mem_factor"):
        j.scaled(mem_factor=float("nan"))
    with pytest.raises(ValueError, match="exclude"):
        j.excluding(["bad node"])


def test_with_array_indices_keeps_throttle() -> None:
    j = SlurmJob(script="true", name="n", array="0-19%4")
    assert j.with_array_indices([11, 3, 7]).render().count("#SBATCH --array=3,7,11%4") == 1


def test_sbatch_lines_in_the_body_are_inert() -> None:
    """sbatch stops reading #SBATCH at the first command; the renderer always emits one first."""
    j = SlurmJob(script="#SBATCH --time=9999\n#SBATCH --uid=0\necho hi\n", name="inert", time_limit=5)
    assert parse_directives(j.render()) == {"job-name": "inert", "time": "00:05:00"}


def test_hostile_values_reach_the_shell_literally(tmp_path: Path) -> None:
    """Run the rendered hostile script with a real bash: values arrive verbatim, nothing executes."""
    script = CASES["hostile_values"].render()
    script += 'printf "%s" "$EVIL" > evil.txt\n'
    (tmp_path / "job.sh").write_text(script)
    p = subprocess.run(["bash", "job.sh"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert p.stdout == "; rm -rf / $(touch pwned) `id` a'b\"c line1\nline2\n"
    assert (tmp_path / "evil.txt").read_text() == "$(touch pwned); rm -rf / `id` 'quoted' \"dq\"\nnext line"
    assert not (tmp_path / "pwned").exists()


def test_expand_log_path() -> None:
    assert expand_log_path("%x-%j.out", job_id="12", name="n") == "n-12.out"
    assert expand_log_path("o.%A_%a.%%", job_id="15", array_job_id="12", array_task_id=3) == "o.12_3.%"

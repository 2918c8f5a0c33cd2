"""A dry run of each shipped Perlmutter run: its job scripts carry the Perlmutter directives, and a
real Slurm (the loopback cluster, through the real SSH client) accepts them with `sbatch --test-only`.

The scripts are the ones the run's DAG submits (dc2tasks.runs.steps + the step operator's
`job_for`), without parsing the DAG. What the loopback cannot be stands in, and only that, in the
copy handed to `sbatch --test-only` (the rendered script is asserted first, unchanged):
- the account: the loopback's `dc2` stands in for DESC's `m1727`;
- memory: one 4000 MB node stands in for a 512 GB Perlmutter node (`--mem=1000M`);
- the image: the loopback has no Shifter SPANK plugin, so sbatch would not know `--image`; the line
  is dropped there.
The node has the feature `cpu` and the qos `regular` exists (tests/cluster/loopback_cluster.sh), so
`--constraint=cpu` and `--qos=regular` are checked by Slurm itself, as is `--licenses=scratch`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from dc2tasks.airflow.operators.step import dc2_command, job_for
from dc2tasks.runs import load_run_config
from dc2tasks.runs.params import validate_params
from dc2tasks.runs.steps import plan_run, step_scripts
from dc2tasks.slurm.commands import Command
from dc2tasks.slurm.transports.ssh import SSHConfig, SSHTransport

RUNS = Path(__file__).resolve().parents[2] / "dags" / "runs"
PERLMUTTER_RUNS = ("run1.1p", "run1.2p_v3", "run1.2i", "run1.2p_v4", "run1.2p_v4_archive")
LOOPBACK_ACCOUNT = "dc2"  # tests/cluster/loopback_cluster.sh: `sacctmgr add account dc2`
STEPS = {
    "run1.1p": {"merge_tract", "trim", "dpdd", "merge_parquet"},
    "run1.2p_v3": {"merge_tract", "trim", "dpdd", "merge_parquet"},
    "run1.2i": {"merge_tract", "trim", "dpdd", "merge_parquet", "source"},
    "run1.2p_v4": {"merge_tract", "trim", "dpdd", "merge_parquet", "source", "forced_source"},
    "run1.2p_v4_archive": {"dpdd", "merge_parquet"},  # from the archived trimmed Object files
}


def rendered_scripts(run: str) -> dict[str, str]:
    """step -> the sbatch script the run's DAG would submit for it (two visits for the visit steps:
    a trigger's visits, as the run files' visit lists live on CFS)."""
    config = load_run_config(RUNS / f"{run}.yaml")
    params = {"visits": [230, 1931758]} if config.visits is not None else {}
    plan = plan_run(config, validate_params(params, config))
    scripts = step_scripts(config, plan, dc2_command(config))
    return {step: job_for(config, script).render() for step, script in scripts.items()}


def loopback_stand_in(script: str) -> str:
    script = script.replace("#SBATCH --account=m1727\n", f"#SBATCH --account={LOOPBACK_ACCOUNT}\n")
    script = re.sub(r"^#SBATCH --mem=\d+M$", "#SBATCH --mem=1000M", script, flags=re.M)
    return re.sub(r"^#SBATCH --image=.*\n", "", script, flags=re.M)


@pytest.mark.parametrize("run", PERLMUTTER_RUNS)
def test_scripts_carry_the_perlmutter_directives(run: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSCRATCH", "/pscratch/sd/p/prod")
    scripts = rendered_scripts(run)
    assert set(scripts) == STEPS[run]
    for step, text in scripts.items():
        for line in ("--account=m1727", "--qos=regular", "--constraint=cpu", "--licenses=scratch",
                     "--image=lsstdesc/stack-jupyter:prod"):  # fmt: skip
            assert f"\n#SBATCH {line}\n" in text, (run, step)
        assert "\nshifter dc2 --version\n" in text, (run, step)
        assert "haswell" not in text and "knl" not in text and "cscratch1" not in text, (run, step)
    if "merge_tract" not in scripts:
        assert "#SBATCH --time=00:30:00\n#SBATCH --mem=32768M\n" in scripts["dpdd"]
        return
    assert "-o /pscratch/sd/p/prod/dc2/" + run + "/work/object --tract" in scripts["merge_tract"]
    assert "#SBATCH --time=06:00:00\n#SBATCH --mem=131072M\n" in scripts["merge_tract"]


@pytest.mark.cluster
@pytest.mark.parametrize("run", PERLMUTTER_RUNS)
def test_sbatch_test_only_accepts_every_step_of_each_perlmutter_run(
    run: str, ssh_config: Callable[..., SSHConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PSCRATCH", raising=False)
    transport = SSHTransport(ssh_config())
    try:
        for step, script in rendered_scripts(run).items():
            sent = loopback_stand_in(script)
            assert "#SBATCH --constraint=cpu\n#SBATCH --time=" in sent and "--qos=regular" in sent
            result = transport.run(Command(("sbatch", "--test-only"), stdin=sent.encode(), timeout=30))
            answer = (result.err + result.out).strip()
            assert result.returncode == 0, (run, step, answer)
            assert "to start at" in answer and "in partition debug" in answer, (run, step, answer)
        # the stand-in is no rubber stamp: Cori's feature, in the same script, is refused
        cori = loopback_stand_in(script).replace("--constraint=cpu", "--constraint=haswell")
        result = transport.run(Command(("sbatch", "--test-only"), stdin=cori.encode(), timeout=30))
        assert result.returncode != 0 and "Invalid feature specification" in result.err, result.err
    finally:
        transport.close()

"""`dc2 serve` where it cannot make a network namespace: it refuses, naming why and the way out, and
`--share-network` then runs standalone directly (run here inside a namespace this test makes, so its
log servers on every interface stay off this machine's network). The browser test covers the
default, namespaced mode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from served_demo import HOST_LOG_PORTS, free_port

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DC2 = str(Path(sys.executable).with_name("dc2"))


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}


def test_without_unshare_it_refuses_and_names_the_way_out(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with python but no unshare
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    env = dict(clean_env(), PATH=str(bin_dir))
    r = subprocess.run([DC2, "serve", "--workdir", str(tmp_path / "demo"), "--port", str(free_port())],
                       env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 1
    assert "cannot make a private network namespace here (`unshare` (util-linux) is not installed)" \
        in r.stderr
    assert "dc2 serve --share-network" in r.stderr and "8793" in r.stderr
    assert not (tmp_path / "demo").exists()  # refused before making anything


@HOST_LOG_PORTS
def test_share_network_runs_standalone_directly(tmp_path: Path) -> None:
    if subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False).returncode != 0:
        if CI:
            pytest.fail("CI runs as root: `unshare --net` must work")
        pytest.skip("needs root for `unshare --net` (the namespace keeps standalone's log servers in)")
    port = free_port()
    out = tmp_path / "serve.out"
    inner = ("import os, sys; from dc2tasks.service.netns import loopback_up; loopback_up(); "
             "os.execv(sys.argv[1], sys.argv[1:])")
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            ["unshare", "--net", sys.executable, "-c", inner, DC2, "serve", "--share-network",
             "--workdir", str(tmp_path / "demo"), "--port", str(port)],
            env=clean_env(), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C stops every process." not in out.read_text():
            assert proc.poll() is None, f"dc2 serve exited {proc.returncode}:\n{out.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not up after 240 s:\n{out.read_text()[-3000:]}"
            time.sleep(0.5)
        text = out.read_text()
        assert "starting airflow standalone sharing this machine's network" in text
        assert "--share-network: its log servers listen on every interface (8793, 8794)" in text
        assert "Airflow is up after" in text and f"http://127.0.0.1:{port}" in text
        log = tmp_path / "demo" / "airflow" / "services" / "standalone.log"
        assert "Starting Airflow Standalone" in log.read_text()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        assert proc.returncode == 0, out.read_text()[-3000:]
        assert "Stopped every process this command started." in out.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    # standalone's group (the one dc2 serve reported) is empty
    group = int(text.split("process group ")[1].split()[0])
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)

"""The Airflow UI as a person uses it (issue #5): a real headless Chromium, driven by Playwright,
against `dc2 serve` (`airflow standalone` in a private network namespace, reached through
127.0.0.1:PORT only) with its real login.

Log in through the login page (a wrong password is refused first), open dc2_demo, set params in the
Trigger form (products = forced_source only, visits = one visit), trigger, watch the grid until the
run's tasks are green, open the Slurm step's log and find the job's own output there. Then check the
same run through the REST API and on disk (only that visit made, the product installed), and that
Ctrl-C (SIGINT) to `dc2 serve` stopped every process it started. A failing step leaves a screenshot
in the test's tmp dir and names it.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from served_demo import (
    CHROMIUM_FLAGS,
    HOST_LOG_PORTS,
    Served,
    Steps,
    dc2_serve,
    free_port,
    patient,
    rest,
    token,
)

from dc2tasks import __version__

DAG = "dc2_demo"
VISIT = 4950001  # the sample repository's second visit: the only one this run makes
SKIPPED_VISIT = 4950000
RUN_TIMEOUT = 300.0


def grid_state(page: Any, run_id: str, task_id: str) -> str | None:
    """The state the grid's tooltip gives for one task of one run (None: no tooltip yet)."""
    page.mouse.move(0, 0)
    cell = page.locator(f'a[data-testid="grid-{run_id}-{task_id}"]')
    if cell.count() == 0:
        return None
    cell.first.hover()
    tooltip = page.locator("[data-part=content]", has_text=f"Task ID: {task_id}").first
    try:
        text = tooltip.inner_text(timeout=5000)
    except Exception:
        return None
    m = re.search(r"State:\s*(\w+)", text)
    return m[1].lower() if m else None


def api_try_number(served: Served, run_id: str, task_id: str) -> int:
    bearer = token(served.url, served.user, served.password)
    path = f"/api/v2/dags/{DAG}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}"
    code, ti = rest(served.url, path, bearer)
    assert code == 200, f"GET {path} -> {code}"
    return int(ti["try_number"])


def host_listening_ports() -> set[int]:
    """TCP ports something listens on in this (the test's) network namespace, IPv4 and IPv6."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A":  # LISTEN
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def api_states(served: Served, run_id: str) -> dict[str, tuple[str | None, int]]:
    """Every task's (state, try) by the REST API, for a failure message."""
    bearer = token(served.url, served.user, served.password)
    path = f"/api/v2/dags/{DAG}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
    code, body = rest(served.url, path, bearer)
    if code != 200:
        return {"(REST)": (f"GET {path} -> {code}", 0)}
    return {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in body["task_instances"]}


@HOST_LOG_PORTS
def test_login_trigger_with_params_success_in_grid_and_job_output_in_log(
    chromium: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    timings: dict[str, float] = {}
    start = time.monotonic()
    port = free_port()
    with dc2_serve(tmp_path / "demo", port) as served:
        timings["serve up"] = time.monotonic() - start
        assert served.url == f"http://127.0.0.1:{port}"
        assert served.user == "admin"
        home = served.workdir / "airflow"
        generated = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        assert generated == {"admin": served.password}
        made = served.workdir / "work" / "forced_source"
        visits = (served.workdir / "sample-repo" / "visits.txt").read_text().split()
        assert [int(v) for v in visits] == [SKIPPED_VISIT, VISIT, 4950002]
        # a real login: without a token the API refuses (not simple_auth_manager_all_admins)
        assert rest(served.url, f"/api/v2/dags/{DAG}")[0] == 401
        # really `airflow standalone`, and its log servers (all interfaces, 8793/8794) are not on
        # this machine's network: they listen inside the namespace only
        assert "Starting Airflow Standalone" in (home / "services" / "standalone.log").read_text()
        assert not {8793, 8794} & host_listening_ports(), "a log server listens on this machine's network"

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1400})
                patient(page, expect)
                ui = Steps(page, tmp_path / "screenshots")

                with ui.step("login"):
                    page.goto(served.url)
                    page.wait_for_url("**/auth/login**")
                    page.get_by_label("Username").fill(served.user)
                    page.get_by_label("Password").fill(served.password + "-wrong")
                    page.get_by_role("button", name="Sign in").click()
                    expect(page.get_by_text("Invalid credentials")).to_be_visible()
                    assert "/auth/login" in page.url
                    page.get_by_label("Password").fill(served.password)
                    page.get_by_role("button", name="Sign in").click()
                    page.wait_for_url(lambda url: "/auth/login" not in url)
                timings["logged in"] = time.monotonic() - start

                with ui.step("trigger form"):
                    page.goto(f"{served.url}/dags/{DAG}")
                    page.get_by_test_id("trigger-dag-button").click()
                    form = page.get_by_role("dialog")
                    expect(form.get_by_text(f"Unpause {DAG} on trigger")).to_be_visible()
                    # products: a multi-select with every product chosen; clear it, choose one
                    form.locator("#element_products").get_by_label("Clear selected options").click()
                    products = form.get_by_role("combobox", name="Select one or multiple values")
                    products.fill("forced_source")
                    products.press("Enter")
                    chosen = form.locator('input[name="element_products"]')
                    expect(chosen).to_have_count(1)
                    expect(chosen).to_have_value("forced_source")
                    # visits: the second JSON editor of the form (tracts, visits)
                    form.locator(".monaco-editor").nth(1).click()
                    page.keyboard.press("Control+A")
                    page.keyboard.press("Backspace")
                    page.keyboard.insert_text(f"[{VISIT}]")
                    submit = form.get_by_test_id("trigger-dag-submit")
                    expect(submit).to_be_enabled()
                    submit.click()
                    page.wait_for_url(f"**/dags/{DAG}/runs/**")
                run_id = urllib.parse.unquote(page.url.split("/runs/", 1)[1].split("/")[0])
                timings["triggered"] = time.monotonic() - start

                with ui.step("run reaches success in the grid"):
                    deadline = time.monotonic() + RUN_TIMEOUT
                    state = None
                    while state != "success":
                        state = grid_state(page, run_id, "install")
                        assert state not in ("failed", "upstream_failed"), (
                            f"install is {state}; tasks: {api_states(served, run_id)}")
                        assert time.monotonic() < deadline, (
                            f"install still {state} after {RUN_TIMEOUT} s; "
                            f"tasks: {api_states(served, run_id)}")
                        if state != "success":
                            time.sleep(2)
                    seen = {t: grid_state(page, run_id, t) for t in
                            ("plan", "forced_source", "source", "dia_source", "finalize", "install")}
                    assert seen == {"plan": "success", "forced_source": "success", "source": "skipped",
                                    "dia_source": "skipped", "finalize": "success", "install": "success"}
                    run_badge = page.get_by_test_id("state-badge").first  # beside the run id
                    expect(run_badge).to_have_text("Success")
                timings["run succeeded"] = time.monotonic() - start

                with ui.step("Slurm step log shows the job's output"):
                    # Airflow 3.3 sometimes retries a task whose trigger fired before the scheduler
                    # saw the deferral end (a stale executor event, apache/airflow#67287), and then
                    # shows only the last try: its job found the file made and says "unchanged"
                    tries = api_try_number(served, run_id, "forced_source")
                    rows = pq.ParquetFile(made / f"forced_src_visit_{VISIT}.parquet").metadata.num_rows
                    job_line = (f"visit {VISIT}: written: {rows} rows from 4 detectors" if tries == 1
                                else f"visit {VISIT}: unchanged: 0 rows from 4 detectors")
                    page.mouse.move(0, 0)
                    page.locator(f'a[data-testid="grid-{run_id}-forced_source"]').click()
                    page.wait_for_url("**/runs/**/tasks/forced_source**")
                    expect(page.get_by_text(job_line).first).to_be_visible()
                    expect(page.get_by_text(f"dc2tasks {__version__}", exact=True).first).to_be_visible()
                    assert f"visit {SKIPPED_VISIT}" not in page.locator("body").inner_text()
                timings["log seen"] = time.monotonic() - start
            finally:
                browser.close()

        # the same run through the REST API and on disk
        bearer = token(served.url, served.user, served.password)
        run_path = f"/api/v2/dags/{DAG}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
        code, run = rest(served.url, run_path, bearer)
        assert code == 200 and run["state"] == "success"
        assert run["conf"]["products"] == ["forced_source"] and run["conf"]["visits"] == [VISIT]
        assert sorted(p.name for p in made.glob("*.parquet")) == [f"forced_src_visit_{VISIT}.parquet"]
        installed = served.workdir / "central" / "forced_source" / "current"
        assert (installed / f"forced_src_visit_{VISIT}.parquet").is_file()

    timings["stopped"] = time.monotonic() - start
    text = served.text()
    assert served.returncode == 0, f"dc2 serve exited {served.returncode} ({served.output}):\n{text[-3000:]}"
    assert served.leftover == [], f"processes left running after Ctrl-C: {served.leftover}"
    assert "Stopped every process this command started." in text
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still accepts connections"
    # after a login and a whole run (task logs included), the password is in its own file only
    holders = [str(p.relative_to(served.workdir)) for p in served.workdir.rglob("*")
               if p.is_file() and not p.is_symlink() and served.password.encode() in p.read_bytes()]
    assert holders == ["airflow/simple_auth_manager_passwords.json.generated"]
    print("timings (s since start): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
          + f"; forced_source tries: {tries}")


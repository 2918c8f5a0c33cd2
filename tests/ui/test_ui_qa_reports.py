"""The QA reports in the Airflow UI (issue #13), as a person sees them: `dc2 serve` with its real login,
a demo run triggered through the REST API, then in a headless Chromium the run's "QA report" view
(the dc2 plugin's external view, served by its FastAPI app inside the API server), each product's
report page with its check table and plots that load, and the install task's "Installed products"
link opening an http page of the installed versions. Without the login, the plugin's pages refuse.

What the pages must show is read from the files the run wrote: the reports in the work directory
(`<work>/<directory>/qa/<product>/qa.json`) and the versions in the central directory. The test
takes a screenshot of the report page; with DC2_README_SCREENSHOT=1 it also replaces
docs/qa-report.png, the README's screenshot (a plain test run leaves the checkout untouched).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from served_demo import CHROMIUM_FLAGS, Served, Steps, dc2_serve, free_port, patient, rest, token

from dc2tasks.products.atomic import atomic_path

DAG = "dc2_demo"
VISIT = 4950001
RUN_TIMEOUT = 420.0
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "qa-report.png"


def post(served: Served, method: str, path: str, body: Any) -> Any:
    bearer = token(served.url, served.user, served.password)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {bearer}"}
    req = urllib.request.Request(served.url + path, data=json.dumps(body).encode(), method=method,
                                 headers=headers)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


def finished_run(served: Served) -> str:
    """Trigger the demo (forced_source of one visit, as the other UI test) and wait for its end."""
    post(served, "PATCH", f"/api/v2/dags/{DAG}", {"is_paused": False})
    run = post(served, "POST", f"/api/v2/dags/{DAG}/dagRuns",
               {"logical_date": None, "conf": {"products": ["forced_source"], "visits": [VISIT]}})
    run_id = str(run["dag_run_id"])
    path = f"/api/v2/dags/{DAG}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        code, body = rest(served.url, path, token(served.url, served.user, served.password))
        assert code == 200, f"GET {path} -> {code}"
        if body["state"] in ("success", "failed"):
            assert body["state"] == "success", f"the demo run failed: {body}"
            return run_id
        assert time.monotonic() < deadline, f"the demo run is still {body['state']} after {RUN_TIMEOUT} s"
        time.sleep(3)


def reports_on_disk(served: Served) -> dict[str, dict[str, Any]]:
    """Every QA report the run wrote, by product."""
    files = (served.workdir / "work").glob("*/qa/*/qa.json")
    found = {p.parent.name: json.loads(p.read_text()) for p in files}
    assert found, ("no QA report (<work>/<directory>/qa/<product>/qa.json) in the demo's work directory: "
                   "the demo DAG has no qa step yet")
    return found


def installed_versions(served: Served) -> list[str]:
    versions = sorted(p.name for p in (served.workdir / "central").glob("*/versions/*") if p.is_dir())
    assert versions, "nothing installed in the demo's central directory"
    return versions


def login(page: Any, served: Served) -> None:
    page.goto(served.url)
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill(served.user)
    page.get_by_label("Password").fill(served.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)


def report_frame(page: Any, ending: str, timeout: float = 60) -> Any:
    """The frame that navigated to a URL ending with `ending`, once it has loaded."""
    deadline = time.monotonic() + timeout
    while (frame := page.frame(url=lambda url: url.endswith(ending))) is None:
        assert time.monotonic() < deadline, f"no frame at *{ending}: {[f.url for f in page.frames]}"
        page.wait_for_timeout(250)
    frame.wait_for_load_state()
    return frame


def loaded_images(frame: Any) -> list[int]:
    """naturalWidth of every image of a page (0: it did not load), once each has finished."""
    return frame.locator("img").evaluate_all(
        "imgs => Promise.all(imgs.map(i => i.decode().then(() => i.naturalWidth, () => 0)))")


def test_qa_report_view_installed_products_link_and_refusal_without_login(chromium: Path,
                                                                          tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    screenshot = tmp_path / "qa-report.png"
    with dc2_serve(tmp_path / "demo", free_port()) as served:
        run_id = finished_run(served)
        quoted = urllib.parse.quote(run_id, safe="")
        run_page = f"{served.url}/dc2/dags/{DAG}/runs/{quoted}/qa"
        # no login, no page: neither the plugin's pages nor its files
        assert rest(served.url, f"/dc2/dags/{DAG}/runs/{quoted}/qa")[0] == 401
        assert rest(served.url, f"/dc2/dags/{DAG}/installed")[0] == 401
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_FLAGS)
            try:
                anonymous = browser.new_page()
                assert anonymous.goto(run_page).status == 401

                page = browser.new_page(viewport={"width": 1400, "height": 1600})
                patient(page, expect)
                ui = Steps(page, tmp_path / "screenshots")
                with ui.step("login"):
                    login(page, served)

                with ui.step("Installed products link opens the installed versions"):
                    # a task's extra links are on its Details tab
                    page.goto(f"{served.url}/dags/{DAG}/runs/{quoted}/tasks/install/details")
                    link = page.get_by_role("link", name="Installed products")
                    href = link.evaluate("a => a.href")  # as the browser resolves it
                    assert href == f"{served.url}/dc2/dags/{DAG}/installed", href
                    link.click()  # a link of the UI's own origin opens in the same tab
                    page.wait_for_url(href)
                    expect(page.locator("h1")).to_have_text(f"Installed products of {DAG}")
                    text = page.locator("table").inner_text()
                    for version in installed_versions(served):
                        assert version in text

                with ui.step("QA report view of the run"):
                    page.goto(f"{served.url}/dags/{DAG}/runs/{quoted}")
                    page.get_by_role("link", name="QA report").first.click()
                    page.wait_for_url("**/plugin/qa-report**")
                    view = page.frame_locator('iframe[title="QA report"]')
                    expect(view.locator("h1")).to_have_text(f"QA reports of {DAG}, run {run_id}")
                    reports = reports_on_disk(served)
                    for product, report in reports.items():
                        expect(view.locator(f'tr[id="{product}"] td').nth(1)).to_have_text(report["verdict"])

                with ui.step("a product's report: the check table and its plots"):
                    product, report = sorted(reports.items())[0]
                    view.locator(f'tr[id="{product}"]').get_by_role("link", name="report").click()
                    frame = report_frame(page, f"/qa/{product}/index.html")
                    table_text = frame.locator("table").first.inner_text()
                    for check in report["checks"]:
                        assert check["name"] in table_text
                    widths = loaded_images(frame)
                    assert len(widths) >= len(report["plots"]) > 0 and all(w > 0 for w in widths), widths
                    page.screenshot(path=str(screenshot))
            finally:
                browser.close()
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("DC2_README_SCREENSHOT") == "1":
        update_readme_screenshot(screenshot)


def update_readme_screenshot(screenshot: Path) -> None:
    """The README never shows half a picture: written beside the tracked file, then renamed."""
    with atomic_path(README_SCREENSHOT) as partial:
        shutil.copyfile(screenshot, partial)

"""The on-call engineer's path through the Prefect UI, walked in a real browser.

Debian's Chromium, headless, driven by Selenium through Debian's chromedriver (both
installed by ``make tools``), against the local stack (``devstack.stack.up``: a real
Prefect server with the V2 UI, rollback-manual deployed with its pick-lists, a process
worker, the moto sandbox). Every assertion is on text a person reads on the page, never
on pixels; each step leaves a screenshot under a temporary folder (printed at the end)
for a human to look at.

The path: Deployments → rollback-manual → Run → Custom run → pick prod and api, say why
and who → Submit → the run pauses with the plan on its page (state message, log line,
artifact) → ⋮ → Resume with a wrong text → a red "Refused" whose message says why,
the service untouched → a second run, the right text → Completed, the service on the
previous version, the run's artifact with the checks.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.sandbox import free_port
from devstack.stack import Options, Stack, down, up

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)
DIALOG = "//*[@role='dialog']"
WAIT_S = 120  # the machine is shared: a worker takes 3-7 s to start a run, often more


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("stack")
    opts = Options(
        state_dir=state,
        sandbox=True,
        deployments=("rollback-manual",),
        api_port=free_port(),
        receiver_port=free_port(),
        moto_port=free_port(),
        quiet=True,
    )
    try:
        yield up(opts)
    finally:
        down(state)


@pytest.fixture(scope="module")
def screens() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="ui-browser-"))
    yield folder
    print(f"\nscreenshots: {folder}")


@pytest.fixture(scope="module")
def browser(screens: Path) -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "no chromium/chromedriver on PATH: run `make tools`"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="ui-browser-profile-")
    options.add_argument(f"--user-data-dir={profile}")
    web = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield Browser(web, screens)
    finally:
        web.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Browser:
    """What a person does on the page: open, click on a text, type, read."""

    def __init__(self, web: Any, screens: Path) -> None:
        self.web = web
        self.screens = screens
        self.shots = 0

    def open(self, url: str) -> None:
        self.web.get(url)

    def text(self) -> str:
        from selenium.common.exceptions import WebDriverException

        try:
            return str(self.web.find_element("tag name", "body").text)
        except WebDriverException:  # the page is being replaced
            return ""

    def wait_for(self, found: Callable[[str], bool], what: str, timeout: float = WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if found(text):
                return text
            if time.monotonic() > deadline:
                self.shot(f"timeout-{what}")
                raise AssertionError(f"the page never showed {what}:\n{text[-2000:]}")
            time.sleep(0.5)

    def wait_text(self, wanted: str, timeout: float = WAIT_S) -> str:
        return self.wait_for(lambda text: wanted in text, repr(wanted), timeout)

    def element(self, xpath: str, timeout: float = 30) -> Any:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        wait = WebDriverWait(
            self.web, timeout, ignored_exceptions=(StaleElementReferenceException,)
        )
        return wait.until(ec.element_to_be_clickable(("xpath", xpath)))

    def click(self, xpath: str) -> None:
        """Click what ``xpath`` names; the single-page app re-renders as data arrives, so
        an element found a moment ago may be replaced or covered: find it again."""
        from selenium.common.exceptions import (
            ElementClickInterceptedException,
            StaleElementReferenceException,
        )

        for _ in range(10):
            try:
                self.element(xpath).click()
                return
            except (StaleElementReferenceException, ElementClickInterceptedException):
                time.sleep(0.5)
        self.shot("unclickable")
        raise AssertionError(f"could not click {xpath}")

    def shot(self, name: str) -> Path:
        self.shots += 1
        path = self.screens / f"{self.shots:02d}-{name}.png"
        self.web.save_screenshot(str(path))
        return path


# -- the path -------------------------------------------------------------------------------
def test_wrong_text_ends_refused_and_changes_nothing(
    stack: Stack, browser: Browser, api: httpx.Client
) -> None:
    # GIVEN the Custom Run form of rollback-manual, filled in by a person
    run_id = _custom_run(stack, browser, api, reason="browser test: wrong text")
    # WHEN the run pauses, the plan is on its page
    _see_the_plan(stack, browser, api, run_id)
    # and a wrong text is typed in ⋮ → Resume
    _resume(browser, api, run_id, "rollback prod please")
    # THEN the run ends a red "Refused" whose message says why; prod/api is untouched
    _tab(browser, "Details")
    page = browser.wait_text("typed confirmation does not match ROLLBACK-PROD")
    assert "Refused" in page and "Completed" not in _header(page)
    browser.shot("refused")
    assert _ecs_task_definition(stack, "api").endswith("api:4")


def test_right_text_rolls_back_and_completes(
    stack: Stack, browser: Browser, api: httpx.Client
) -> None:
    # GIVEN a second run from the form, paused with its plan
    run_id = _custom_run(stack, browser, api, reason="browser test: right text")
    _see_the_plan(stack, browser, api, run_id)
    # WHEN the right text is typed
    _resume(browser, api, run_id, "ROLLBACK-PROD")
    # THEN the run completes, prod/api runs the previous version
    _tab(browser, "Details")
    page = browser.wait_text("rollback succeeded")
    assert "Completed" in page
    browser.shot("completed")
    assert _ecs_task_definition(stack, "api").endswith("api:3")
    # and the run's artifact shows the outcome and every check
    _tab(browser, "Artifacts")
    browser.click("//*[contains(normalize-space(), 'rollback succeeded')][not(*)]")
    # the key's page lists its versions (the plan, then the outcome): open the newest
    browser.wait_text("Created rollback-")
    newest = next(
        a
        for a in browser.web.find_elements("tag name", "a")
        if re.fullmatch(r"[0-9a-f]{8}", a.text.strip())
    )
    newest.click()
    page = browser.wait_text("same_family")
    for text in ("api:4", "api:3", "images_exist", "pass", "answered after waiting"):
        assert text in page, text
    browser.shot("artifact")


# -- steps ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        yield client


def _custom_run(stack: Stack, browser: Browser, api: httpx.Client, reason: str) -> str:
    """Deployments → rollback-manual → Run → Custom run → fill in → Submit; the new run's id."""
    deployment = api.get("/deployments/name/rollback/rollback-manual").json()
    before = _run_ids(api, deployment["id"])
    browser.open(f"{stack.ui_url}/v2/deployments")
    browser.click("//a[normalize-space()='rollback-manual']")
    browser.wait_text("Entrypoint")
    browser.click("//button[normalize-space()='Run']")
    browser.click("//*[@role='menuitem'][normalize-space()='Custom run']")
    page = browser.wait_text("dry_run (Optional)")  # the Custom Run form, last field
    # The form: only a person's fields, each explained; no trigger, no confirmation
    labels = {line.removesuffix(" (Optional)") for line in page.splitlines()}
    assert {"environment", "service", "reason", "requested_by", "to", "dry_run"} <= labels
    for name in ("trigger", "confirmation", "audit_id", "config_path", "source_event_id"):
        assert name not in labels, name
    assert "Configured: prod: api, worker; staging: api." in page
    _pick(browser, "environment", "prod")
    _pick(browser, "service", "api")
    _type(browser, 0, reason)
    _type(browser, 1, "on-call engineer")
    browser.shot("form")
    browser.click("//button[normalize-space()='Submit']")
    browser.wait_text("scheduled to start")  # the UI's notice
    deadline = time.monotonic() + 30
    while not (new := _run_ids(api, deployment["id"]) - before):
        assert time.monotonic() < deadline, "Submit created no run"
        time.sleep(0.5)
    (run_id,) = new
    return run_id


def _see_the_plan(stack: Stack, browser: Browser, api: httpx.Client, run_id: str) -> None:
    """The run page while it waits: badge, state message, log line, artifact."""
    page_url = f"{stack.ui_url}/v2/runs/flow-run/{run_id}"
    browser.open(page_url)
    _tab(browser, "Details")
    page = browser.wait_text("waiting for ROLLBACK-PROD until")
    assert "Paused" in page
    assert "Resume and type it to roll api back from api:4 to api:3" in page
    browser.shot("paused-details")
    # Logs reach the server in batches (every ~2 s), possibly after the run paused, and
    # the page of a paused run does not poll for more: read it once the line is there,
    # and reload it once (as a person would) if it still shows an older list.
    _wait_logged(api, run_id, "waiting for ROLLBACK-PROD until")
    for attempt in (1, 2):
        _tab(browser, "Logs")
        _newest_first(browser)
        try:
            browser.wait_text("waiting for ROLLBACK-PROD until", timeout=30 * attempt)
            break
        except AssertionError:
            if attempt == 2:
                raise
            browser.open(page_url)
    browser.shot("paused-logs")
    _tab(browser, "Artifacts")
    browser.wait_text("rollback-")
    browser.shot("paused-artifact")


def _newest_first(browser: Browser) -> None:
    """The Logs tab's sort: newest to oldest."""
    browser.element(
        "//button[@role='combobox'][contains(normalize-space(), 'to newest') or contains(normalize-space(), 'to oldest')]"
    )
    if browser.web.find_elements("xpath", "//button[normalize-space()='Oldest to newest']"):
        browser.click("//button[normalize-space()='Oldest to newest']")
        browser.click("//*[@role='option'][normalize-space()='Newest to oldest']")


def _wait_logged(api: httpx.Client, run_id: str, text: str, timeout: float = 30) -> None:
    """Until the server holds a log line of the run with ``text``."""
    deadline = time.monotonic() + timeout
    while True:
        logs = api.post(
            "/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}
        ).json()
        if any(text in str(entry["message"]) for entry in logs):
            return
        assert time.monotonic() < deadline, f"no log line with {text!r} on the server"
        time.sleep(0.5)


def _resume(browser: Browser, api: httpx.Client, run_id: str, text: str) -> None:
    """⋮ → Resume: the dialog shows the plan and asks for the text."""
    browser.click("//button[.//span[normalize-space()='Open menu'] or @aria-label='Open menu']")
    browser.click("//*[@role='menuitem'][normalize-space()='Resume']")
    box = browser.element(f"{DIALOG}//textarea")  # the dialog loads the run's form
    shown = browser.element(DIALOG).text
    assert "Roll api back from api:4 to api:3? Type ROLLBACK-PROD to confirm." in shown
    assert "same_family: pass" in shown
    box.send_keys(text)
    browser.shot("resume-dialog")
    resume = f"{DIALOG}//button[normalize-space()='Resume']"
    browser.click(resume)
    # The dialog closes once the server took the answer; on a busy machine a click can
    # land while the dialog is still settling: click again while the run is still paused.
    deadline, clicked = time.monotonic() + 60, time.monotonic()
    while api.get(f"/flow_runs/{run_id}").json()["state"]["type"] == "PAUSED":
        assert time.monotonic() < deadline, "Resume did not resume the run"
        if time.monotonic() - clicked > 10 and browser.web.find_elements("xpath", resume):
            browser.click(resume)
            clicked = time.monotonic()
        time.sleep(0.5)
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser.web, 30).until(ec.invisibility_of_element_located(("xpath", DIALOG)))


def _pick(browser: Browser, field: str, value: str) -> None:
    browser.click(f"//button[@aria-label='Select {field}']")
    browser.click(f"//*[@role='option'][normalize-space()='{value}']")
    browser.element(f"//button[@aria-label='Select {field}'][normalize-space()='{value}']")


def _type(browser: Browser, index: int, text: str) -> None:
    """Type into the form's ``index``-th text box (reason, requested_by, to); the form
    re-renders as it fills, so an element found a moment ago may be gone: find it again."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(5):
        try:
            browser.element(f"(//textarea)[{index + 1}]").send_keys(text)
            return
        except StaleElementReferenceException:
            time.sleep(0.5)
    raise AssertionError(f"text box {index} kept changing")


def _tab(browser: Browser, name: str) -> None:
    browser.click(f"//*[@role='tab'][normalize-space()='{name}']")


def _header(page: str) -> str:
    """The run page's header: the text before its tabs."""
    return page.split("Details", 1)[0]


def _run_ids(api: httpx.Client, deployment_id: str) -> set[str]:
    runs = api.post(
        "/flow_runs/filter",
        json={"deployments": {"id": {"any_": [deployment_id]}}, "limit": 50},
    ).json()
    return {str(run["id"]) for run in runs}


def _ecs_task_definition(stack: Stack, service: str) -> str:
    import boto3

    ecs = boto3.client(
        "ecs",
        region_name="us-east-1",
        endpoint_url=stack.env["AWS_ENDPOINT_URL"],
        aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
    )
    found = ecs.describe_services(cluster="demo-cluster", services=[service])["services"]
    return str(found[0]["taskDefinition"])

"""Browser tests: a real Flowmill server subprocess on loopback, driven by Debian's chromium through
Playwright (frontend.md §9). Nothing is downloaded: `playwright install` is never run.

The server loads the repository's models/ (the shipped demo checkpoint) and the end-to-end test pack
(a slow node and a node that fails on purpose); its working directory is a temporary folder holding
copies of the shipped input/ images. One server serves the whole session; each test gets a fresh browser
context, so localStorage (the autosaved workflow) starts empty unless the test keeps the page.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.api.server_process import ServerProcess

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 800}


def _is_browser_test(item: pytest.Item) -> bool:
    return "tests/browser/" in str(item.fspath).replace("\\", "/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the browser tests and run them last: Playwright's sync API keeps an event loop running in
    the main thread while it is open, and tests that call asyncio.run must not come after it."""
    for item in items:
        if _is_browser_test(item):
            item.add_marker(pytest.mark.browser)
    items.sort(key=_is_browser_test)  # stable: the order within each group is kept


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("browser-server")
    (workdir / "input").mkdir()
    for image in (REPO / "input").glob("*.png"):  # example.png, and the editors' red circle
        shutil.copy(image, workdir / "input" / image.name)
    process = ServerProcess(workdir, extra_args=["--models-dir", str(REPO / "models")]).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("browser tests need Debian's chromium at /usr/bin/chromium: "
                    "apt-get install -y --no-install-recommends chromium (see README, Tests)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class PageErrors:
    """Console errors and uncaught exceptions seen by a page; a test fails if any appear unexpectedly."""

    def __init__(self, page: Page) -> None:
        self.messages: list[str] = []
        page.on("pageerror", lambda error: self.messages.append(f"pageerror: {error}"))
        page.on("console", lambda message: self.messages.append(f"console.{message.type}: {message.text}")
                if message.type == "error" else None)

    def take(self) -> list[str]:
        taken, self.messages = self.messages, []
        return taken


@pytest.fixture
def page_errors() -> list[PageErrors]:
    return []


@pytest.fixture
def page(browser: Browser, server: ServerProcess, page_errors: list[PageErrors]) -> Iterator[Page]:
    """The app, opened and ready (`window.app.ready`), in a fresh context (empty localStorage)."""
    # bypass_csp: Playwright evaluates test expressions with eval, which the app's CSP (rightly) forbids.
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, accept_downloads=True, bypass_csp=True)
    opened = context.new_page()
    errors = PageErrors(opened)
    page_errors.append(errors)
    opened.goto(server.url + "/")
    opened.wait_for_function("window.app && window.app.ready === true", timeout=30_000)
    yield opened
    unexpected = [m for m in errors.take() if "expected-in-test" not in m]
    context.close()
    assert not unexpected, unexpected

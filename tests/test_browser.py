"""The widgets in a real browser: JupyterLab headless on 127.0.0.1, a notebook run in Debian's chromium driven by
Playwright. Notebook 04: an image uploaded through the file chooser, a threshold slider moved, and the
PRESENT/ABSENT labels seen to change. Notebook 05: three questions answered with the keyboard, the labels file
changed accordingly and the F1 line updated. Skips, saying why, where no chromium or Playwright is installed
(`.ci/run` installs chromium with apt-get). Set AIMONK_SCREENSHOT=PATH to keep the screenshot (the README's)."""
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "04_predict.ipynb"
pytestmark = [
    pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning"),
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def jupyter_lab(trained_run, demo_dir, tmp_path):
    """JupyterLab on a free local port, no token, serving notebook 04 with its parameters set to the tiny run."""
    yield from lab_serving(NOTEBOOK, {"data_dir": str(demo_dir), "out_dir": str(trained_run[0]),
                                      "csv_path": str(tmp_path / "predictions.csv")}, tmp_path)


def lab_serving(notebook: Path, parameters: dict, tmp_path):
    import papermill

    root = tmp_path / "lab"
    root.mkdir()
    papermill.execute_notebook(str(notebook), str(root / notebook.name), prepare_only=True, progress_bar=False,
                               parameters=parameters)
    port = free_port()
    log = open(tmp_path / "jupyter.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True", "--allow-root",
         f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config")})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not start: {(tmp_path / 'jupyter.log').read_text()[-2000:]}")
        yield url, root
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def decisions(page) -> list[str]:
    text = page.locator(".widget-html-content").filter(has_text="Attributes present").first.inner_text()
    return [word for word in text.split() if word in ("PRESENT", "ABSENT")]


@contextlib.contextmanager
def notebook_page(url: str, name: str, tmp_path):
    """A chromium page with the notebook `name` open in JupyterLab and all its cells run."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium"), executable_path=CHROMIUM, headless=True, viewport={"width": 1400, "height": 1000},
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])  # a fresh user-data dir: nothing to sync or update
        page = browser.new_page()
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{url}/lab/tree/{name}")
            page.locator(".jp-Notebook").first.wait_for()
            page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for()  # the kernel is up
            for attempt in range(3):  # a Run All sent while the kernel still connects can be dropped: retry
                page.get_by_role("menuitem", name="Run", exact=True).click()
                page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
                try:
                    page.locator(".jp-InputPrompt", has_text="[1]").first.wait_for(timeout=15_000)
                    break
                except sync_api.TimeoutError:
                    continue
            yield page
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))  # what the browser showed, beside the test's files
            raise
        finally:
            browser.close()


@pytest.mark.slow
def test_upload_and_slider_change_the_decisions_in_a_real_browser(jupyter_lab, demo_dir, tmp_path):
    url, _ = jupyter_lab
    upload = next((demo_dir / "images").glob("*.jpg"))
    with notebook_page(url, NOTEBOOK.name, tmp_path) as page:
        page.locator("text=Attributes present").first.wait_for()  # the app rendered its first image

        with page.expect_file_chooser() as chooser:
            page.locator(".jupyter-widgets button", has_text="Upload image").first.click()
        chooser.value.set_files(str(upload))
        page.locator(f".widget-html-content >> text={upload.name}").first.wait_for()
        before = decisions(page)
        assert len(before) == 4

        handle = page.locator(".noUi-handle").first
        handle.focus()
        handle.press("End" if before[0] == "PRESENT" else "Home")  # the first threshold to 1.0 or to 0.0
        flipped = "ABSENT" if before[0] == "PRESENT" else "PRESENT"
        page.wait_for_function(
            """word => [...document.querySelectorAll('.widget-html-content')].some(
                   node => node.innerText.includes('Attributes present') &&
                           node.innerText.split(/\\s+/).filter(w => w === 'PRESENT' || w === 'ABSENT')[0] === word)""",
            arg=flipped)
        after = decisions(page)
        assert after[0] == flipped and after[1:] == before[1:]
        shot = page.locator(".jupyter-widgets.widget-vbox").first.screenshot(path=str(tmp_path / "widget.png"))
        assert shot[:4] == b"\x89PNG"
        if os.environ.get("AIMONK_SCREENSHOT"):
            shutil.copy(tmp_path / "widget.png", os.environ["AIMONK_SCREENSHOT"])


@pytest.mark.slow
def test_three_questions_answered_with_the_keyboard_change_the_labels_file(demo_dir, tmp_path):
    import aimonk

    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    original = (data / "labels.txt").read_text()
    aimonk.train(data, aimonk.preset("default", backbone="efficientnet_lite0", image_size=48), tmp_path / "run",
                 progress=False)  # the default recipe, retrained in seconds after each batch
    lab = lab_serving(NOTEBOOKS / "05_label.ipynb", {"data_dir": str(data), "out_dir": str(tmp_path / "run"),
                                                     "batch_size": 3}, tmp_path)
    url, _ = next(lab)
    try:
        with notebook_page(url, "05_label.ipynb", tmp_path) as page:
            page.locator("text=answered 0").first.wait_for()  # the app shows its first question
            keys = page.get_by_placeholder("type 1 / 0 / u / s here")
            for count, key in enumerate("101", start=1):
                keys.focus()
                keys.press(key)
                page.locator(f"text=answered {count}").first.wait_for()
            page.locator("text=->").first.wait_for()  # the F1 line after retraining: before -> after
            journal = (data / "labels.txt.aimonk-journal.jsonl").read_text().splitlines()
            assert len(journal) == 3 and all('"action": "apply"' in line for line in journal)
            changed = [(a, b) for a, b in zip(original.splitlines(), (data / "labels.txt").read_text().splitlines())
                       if a != b]
            assert 1 <= len(changed) <= 3 and (data / "labels.txt.orig").read_text() == original
    finally:
        next(lab, None)

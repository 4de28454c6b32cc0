"""The documentation: the README short and its links live, mkdocs.yml naming every notebook and page, and (slow)
the site built with warnings as errors from executed notebooks and opened in chromium."""
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def mkdocs_config() -> dict:
    class Loader(yaml.SafeLoader):  # mkdocs.yml may hold !ENV and python tags: read as plain text
        pass
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)


def nav_entries(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [e for value in nav.values() for e in nav_entries(value)]
    return [e for item in nav for e in nav_entries(item)]


def relative_links(markdown: str) -> list[str]:
    links = re.findall(r"\]\(([^)\s]+)\)", markdown)
    return [link.split("#")[0] for link in links if not link.startswith(("http", "#", "mailto:"))]


def test_the_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    missing = [link for link in relative_links(readme) if not (ROOT / link).exists()]
    assert not missing, missing


def test_mkdocs_names_every_notebook_and_every_page_it_names_exists():
    entries = nav_entries(mkdocs_config()["nav"])
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [e for e in entries if e.endswith(".ipynb")] == [f"notebooks/{name}" for name in notebooks]
    pages = [e for e in entries if e.endswith(".md")]
    assert not [p for p in pages if not (ROOT / "docs" / p).is_file()]
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert on_disk == set(pages), on_disk ^ set(pages)  # no page left out of the navigation


@pytest.mark.parametrize("page", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md")))
def test_the_links_of_each_docs_page_resolve(page):
    source = ROOT / page
    for link in relative_links(source.read_text()):
        target = (source.parent / link).resolve()
        in_repo = target.relative_to(ROOT)  # figures/ and notebooks/ are added to the site by the build hook
        assert target.exists() or (ROOT / "docs" / link).exists(), f"{page}: {link} ({in_repo})"


@pytest.mark.slow
def test_the_site_builds_strict_and_shows_notebook_figures_and_the_api(executed_notebooks, tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "AIMONK_DOCS_RUN": str(executed_notebooks[0]), "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": str(ROOT)}
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                           cwd=ROOT, env=env, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    assert (site / "index.html").is_file()
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"the site built; no chromium at {CHROMIUM} to open it (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.goto((site / "notebooks" / "03_evaluate" / "index.html").as_uri())
        page.wait_for_load_state("load")
        widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) >= 4 and all(w > 0 for w in widths), widths  # the figures, each one loaded
        page.goto((site / "notebooks" / "04_predict" / "index.html").as_uri())
        page.wait_for_load_state("load")
        assert page.locator("img[alt='the prediction app']").count() == 1  # the app's picture, not an empty view
        page.goto((site / "api" / "index.html").as_uri())
        headings = page.locator("h2").all_inner_texts()
        assert {"aimonk.train", "aimonk.evaluate", "aimonk.load_predictor", "aimonk.TrainConfig"} <= {
            h.replace("¶", "").split()[0] for h in headings}, headings
        import aimonk
        first_line = inspect.getdoc(aimonk.train).splitlines()[0].replace("`", "")
        assert first_line in page.inner_text("body"), first_line  # its docstring, not only its name
        browser.close()


def test_every_fenced_block_of_the_readme_is_closed_and_holds_commands_only():
    readme = (ROOT / "README.md").read_text()
    assert readme.count("```") % 2 == 0
    programs = {"make", "source", "aimonk", "python", "python3", "pip", "conda", "torchrun", "tensorboard", "mlflow"}
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        for line in re.sub(r"\\\n\s*", "", block).splitlines():
            if line.strip() and not line.startswith("#"):
                assert line.split()[0] in programs, line  # prose swallowed by an unclosed fence shows here


def test_the_site_shows_a_widgets_picture_where_no_kernel_holds_it(tmp_path):
    """docs/hooks/executed.py stages each executed notebook for its page: an output holding a widget's view and
    a picture of it keeps the picture (a static page has no kernel for the view: it showed an empty Out[5])."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("executed_hook", ROOT / "docs" / "hooks" / "executed.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    widget = {"application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "image/png": "iVBOR",
              "text/plain": "App"}
    notebook = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "execute_result", "data": widget},
                                                             {"output_type": "stream", "text": "hi"}]}]}
    (tmp_path / "in.ipynb").write_text(json.dumps(notebook))
    hook.static_copy(tmp_path / "in.ipynb", tmp_path / "out.ipynb")
    [shown, stream] = json.loads((tmp_path / "out.ipynb").read_text())["cells"][0]["outputs"]
    assert set(shown["data"]) == {"image/png", "text/plain"} and stream == {"output_type": "stream", "text": "hi"}


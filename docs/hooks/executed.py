"""mkdocs hook: the site's notebook pages are the executed notebooks of a `make demo` run (runs/demo, or the
folder named by $AIMONK_DOCS_RUN), and its pictures the repository's figures/; both are added to the build
without copying anything into docs/ (the committed notebooks stay without outputs)."""
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def executed_run() -> Path:
    return Path(os.environ.get("AIMONK_DOCS_RUN", ROOT / "runs" / "demo")).resolve()


@event_priority(100)  # before mkdocs-jupyter turns the .ipynb files into pages
def on_files(files, config):
    run = executed_run()
    missing = [name for name in NOTEBOOKS if not (run / name).is_file()]
    if missing:
        raise PluginError(f"{run} holds no executed {', '.join(missing)}: run `make demo` first "
                          f"(or set AIMONK_DOCS_RUN to the --out folder of an `aimonk notebooks` run)")
    global staged
    staged = Path(tempfile.mkdtemp(prefix="aimonk-docs-"))  # mkdocs-jupyter reads plain files of a src_dir
    (staged / "notebooks").mkdir()
    for name in NOTEBOOKS:
        static_copy(run / name, staged / "notebooks" / name)
        files.append(File(f"notebooks/{name}", str(staged), config["site_dir"], config["use_directory_urls"]))
    for figure in sorted((ROOT / "figures").glob("*.png")):
        files.append(File.generated(config, f"figures/{figure.name}", abs_src_path=str(figure)))
    return files


staged = None
WIDGET = "application/vnd.jupyter.widget-view+json"


def static_copy(source: Path, target: Path) -> None:
    """The executed notebook as a static page shows it: an output that holds a live widget's view and a picture
    of it (the prediction app's snapshot) keeps the picture only, since no kernel holds the widget there."""
    notebook = json.loads(source.read_text(encoding="utf-8"))
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET in data and "image/png" in data:
                del data[WIDGET]
    target.write_text(json.dumps(notebook), encoding="utf-8")


def on_post_build(config):
    if staged is not None:
        shutil.rmtree(staged, ignore_errors=True)


REPOSITORY = "https://github.com/aimonk/aimonk/blob/main/"


def readme_as_home_page() -> str:
    """README.md with its links rewritten for the site: docs/X -> X, notebooks/ to the executed pages,
    figures/ kept, any other file of the repository -> its page on GitHub."""
    def link(match):
        target = match.group(1)
        if target.startswith(("http", "#", "figures/")):
            return match.group(0)
        if target.startswith("docs/"):
            return f"]({target[len('docs/'):]})"
        if target.startswith("notebooks/") and target.endswith(".ipynb"):
            return match.group(0)
        return f"]({REPOSITORY}{target})"
    return re.sub(r"\]\(([^)\s]+)\)", link, (ROOT / "README.md").read_text())


def on_page_read_source(page, config):
    if page.file.src_uri == "index.md":
        return readme_as_home_page()
    return None

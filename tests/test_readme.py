"""The README true as written: the block of first steps on the demo and every other fenced shell command that
touches only the demo data run as they stand, in order, in a fresh folder laid out like a checkout after
`make demo` (data/demo made by the README's own `aimonk demo --out data/demo`, and aimonk on the PATH as
`source .venv/bin/activate` puts it)."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DEMO_DATA = "aimonk demo --out data/demo"


def fenced_commands(text: str) -> list[str]:
    """The commands of the ```bash blocks: comments dropped, backslash-continued lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for command in re.sub(r"\\\n\s*", "", block).splitlines():
            command = command.split("  #")[0].split(" # ")[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def touches_only_the_demo(command: str) -> bool:
    """Its data paths are all data/demo (and the runs it makes): no user folder, no file of the user's."""
    words = shlex.split(command)
    paths = [w for w in words if "/" in w and not w.startswith("-")]
    return words[0] in ("aimonk", "python") and any(p.startswith("data/demo") for p in paths) and all(
        p.startswith(("data/demo", "runs/", "benchmarks/")) for p in paths)


FIRST_STEPS = "```bash\n" + README.split("```bash\n", 2)[2].split("```")[0] + "```"  # after the make commands
DEMO_COMMANDS = [c for c in fenced_commands(FIRST_STEPS) if not c.startswith("source ")] + [
    c for c in fenced_commands(README.replace(FIRST_STEPS, "")) if touches_only_the_demo(c)]


def test_the_readme_says_how_to_reach_the_installed_aimonk_and_shows_the_demo_commands():
    assert FIRST_STEPS.startswith("```bash\nsource .venv/bin/activate") and ".venv/bin/aimonk" in FIRST_STEPS
    assert DEMO_DATA in DEMO_COMMANDS and len(DEMO_COMMANDS) >= 9
    assert "../shared" not in README  # the user's paths, never this repository's neighbours


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_every_readme_command_on_the_demo_data_runs_as_written(tmp_path):
    (tmp_path / "benchmarks").symlink_to(ROOT / "benchmarks")
    bin_dir = Path(sys.executable).parent  # the environment's aimonk and python, as activating it gives
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    ordered = [DEMO_DATA] + [c for c in DEMO_COMMANDS if c != DEMO_DATA]  # make demo's data comes first
    for command in ordered:
        done = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=tmp_path, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr and "Warning" not in done.stderr, f"{command}\n{done.stderr[-2000:]}"
    assert (tmp_path / "runs" / "first" / "model.onnx").is_file()
    assert len((tmp_path / "runs" / "first" / "predictions.csv").read_text().splitlines()) == 398  # header + 397

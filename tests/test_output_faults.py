"""Where predict's and export's results go wrong: a full disk, a closed stdout, a reader that goes away, a
malformed threshold override, two exports to one file at once, a damaged cached graph, a kill -9 mid-write."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from aimonk.cli import main
from test_bad_inputs import fails

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", "--model", str(run / "model.pt"), "--out", str(path)]) == 0
    return path


def aimonk_shell(command: str) -> subprocess.CompletedProcess:
    """`aimonk ...` through a shell (for >&-, /dev/full and pipes), with this checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(["bash", "-c", f"{sys.executable} -m aimonk {command}"], capture_output=True, text=True,
                          env=env, timeout=300)


def test_predict_to_a_full_disk_says_so_in_one_line(exported, demo_dir):
    done = aimonk_shell(f"predict {demo_dir / 'images'} --model {exported} --format csv > /dev/full")
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert done.returncode == 2 and errors == ["aimonk predict: error: cannot write to standard output: No space "
                                               "left on device"], done.stderr


def test_predict_with_stdout_closed_says_so_in_one_line(exported, demo_dir):
    done = aimonk_shell(f"predict {demo_dir / 'images' / 'image_0.jpg'} --model {exported} >&-")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "aimonk predict: error: standard output is closed: nowhere to write the predictions (redirect it to a file)"]


def test_predict_into_head_is_quiet(exported, demo_dir):
    done = aimonk_shell(f"predict {demo_dir / 'images'} --model {exported} --format text 2>/dev/null | head -1; "
                        "echo \"exit ${PIPESTATUS[0]}\"")
    assert done.stdout.splitlines() == ["=" * 60, "exit 0"]
    done = aimonk_shell(f"predict {demo_dir / 'images'} --model {exported} --format text | head -1")
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr


@pytest.mark.parametrize("value, words", [("", "thresholds must be numbers, got ''"),
                                          ("0.3,,0.4,0.5", "thresholds must be numbers"),
                                          ("nan", "thresholds must lie between 0 and 1"),
                                          ("0.3,0.4", "expected 1 or 4 thresholds")])
def test_malformed_threshold_overrides_are_one_line(exported, demo_dir, capsys, value, words):
    fails(capsys, ["predict", demo_dir / "images" / "image_0.jpg", "--model", exported, "--thresholds", value], words)


def test_export_prints_names_escaped(run, tmp_path, capsys):
    out = tmp_path / "odd\x1b]0;TITLE\x07name.onnx"
    assert main(["export", "--model", str(run / "model.pt"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\x07" not in printed and "odd\\x1b]0;TITLE\\x07name.onnx" in printed


@pytest.mark.slow
def test_two_exports_to_one_file_at_once_one_writes_and_the_other_says_why(run, tmp_path):
    out = tmp_path / "m.onnx"
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    both = [subprocess.Popen([sys.executable, "-m", "aimonk", "export", "--model", str(run / "model.pt"), "--out",
                              str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    results = [(process.wait(timeout=300), *process.communicate()) for process in both]
    assert sorted(code for code, *_ in results) == [0, 2], results
    [(_, _, refused)] = [result for result in results if result[0] == 2]
    errors = refused.strip().splitlines()
    assert len(errors) == 1 and str(out) in errors[0], errors
    assert "is being written by another aimonk process" in errors[0] or "already exists" in errors[0]
    assert [path.name for path in tmp_path.iterdir()] == ["m.onnx"]  # no lock or temporary left


def predict_json(run, image, cache) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIMONK_CACHE": str(cache),
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "aimonk", "predict", str(image), "--model", str(run / "model.pt"),
                           "--format", "json", "--device", "cpu"], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.parametrize("damage", ["truncated", pytest.param("garbage", marks=pytest.mark.slow)])
def test_a_damaged_cached_graph_is_rebuilt_with_one_warning(run, demo_dir, tmp_path, damage):
    """A graph cut short where the cache keeps it (<cache>/graphs/KEY.npy, as a killed write would leave it
    without atomic writes), or garbage with a matching checksum: never used, rebuilt, one warning."""
    from aimonk.cache import content_digest

    image, cache = demo_dir / "images" / "image_0.jpg", tmp_path / "cache"
    done = predict_json(run, image, cache)
    assert done.returncode == 0, done.stderr
    [array] = list((cache / "graphs").glob("*.npy"))
    data = array.read_bytes()
    if damage == "truncated":
        array.write_bytes(data[:len(data) // 2])
    else:
        garbage = np.frombuffer(os.urandom(4096), np.uint8)
        np.save(array, garbage)
        meta = array.with_suffix(".json")
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "rows": 4096, "digest": content_digest(garbage)}))
    again = predict_json(run, image, cache)
    assert again.returncode == 0 and json.loads(again.stdout) == json.loads(done.stdout), again.stderr
    warnings = [line for line in again.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "damaged" in warnings[0] and "rebuilt" in warnings[0], again.stderr
    assert array.read_bytes() == data  # rebuilt whole


@pytest.mark.slow
def test_sigkill_while_the_graph_is_written_leaves_nothing_a_later_predict_uses(run, demo_dir, tmp_path):
    """A real `kill -9` of a predict at the moment its traced graph's temporary file exists in the cache: no
    graph is published half-written; the next predict traces again, answers as a whole run does, and removes
    the dead writer's temporary."""
    import signal
    import time

    image = demo_dir / "images" / "image_0.jpg"
    expected = json.loads(predict_json(run, image, tmp_path / "reference").stdout)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for attempt in range(5):  # the write takes milliseconds: a kill may come too late, then try again
        cache = tmp_path / f"cache{attempt}"
        env["AIMONK_CACHE"] = str(cache)
        victim = subprocess.Popen([sys.executable, "-m", "aimonk", "predict", str(image), "--model",
                                   str(run / "model.pt"), "--format", "json", "--device", "cpu"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        graphs, deadline = cache / "graphs", time.monotonic() + 120
        while victim.poll() is None and time.monotonic() < deadline:
            if graphs.is_dir() and any(path.name.endswith(".tmp") for path in os.scandir(graphs)):
                victim.send_signal(signal.SIGKILL)
                break
        victim.wait(timeout=60)
        left = sorted(path.name for path in graphs.iterdir()) if graphs.is_dir() else []
        if victim.returncode == -signal.SIGKILL and any(name.endswith(".tmp") for name in left):
            break
    else:
        pytest.fail("no kill landed while the graph was being written in 5 tries")
    assert not any(name.endswith(".npy") for name in left), left  # nothing published half-written
    again = predict_json(run, image, cache)
    assert again.returncode == 0 and json.loads(again.stdout) == expected, again.stderr
    assert "damaged" not in again.stderr
    assert sorted(path.suffix for path in graphs.iterdir()) == [".json", ".npy"]  # the temporary removed

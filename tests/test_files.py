"""Outputs are written atomically, with the mode of any new file, and never over a run unasked."""
import os
from pathlib import Path

import pytest

from aimonk.files import OutputExistsError, check_output_folder, write_text


def test_a_write_that_fails_halfway_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = write_text(tmp_path / "history.json", '{"epochs": [1, 2]}')
    real = Path.write_text

    def half_then_killed(self, text, **kwargs):
        real(self, text[: len(text) // 2], **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", half_then_killed)
    with pytest.raises(KeyboardInterrupt):
        write_text(target, '{"epochs": [1, 2, 3]}')
    assert target.read_text() == '{"epochs": [1, 2]}' and os.listdir(tmp_path) == ["history.json"]


def test_outputs_get_the_mode_of_a_new_file(tmp_path):
    umask = os.umask(0o027)
    try:
        write_text(tmp_path / "a.json", "{}")
        (tmp_path / "b.json").write_text("{}")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == (tmp_path / "b.json").stat().st_mode & 0o777 == 0o640


def test_output_folder_rules(tmp_path):
    assert check_output_folder(tmp_path / "new", names=("model.pt",)) == tmp_path / "new"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    check_output_folder(tmp_path / "run", names=("model.pt",))  # other files are left alone, not replaced
    (tmp_path / "run" / "model.pt").write_text("a model")
    with pytest.raises(OutputExistsError, match="already holds model.pt; choose a new folder or add --overwrite"):
        check_output_folder(tmp_path / "run", names=("model.pt",))
    check_output_folder(tmp_path / "run", overwrite=True, names=("model.pt",))
    with pytest.raises(OutputExistsError, match="already holds model.pt, notes.txt"):
        check_output_folder(tmp_path / "run")  # names=None: the folder must be new or empty
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "run" / "notes.txt")


def test_a_temporary_left_by_a_killed_writer_is_cleared_by_the_next_write(tmp_path):
    import socket
    import subprocess
    import sys

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    (tmp_path / f".model.pt.{ended.stdout.strip()}@{host}@abc123.tmp").write_bytes(b"half a checkpoint")  # SIGKILL
    (tmp_path / ".model.pt.abc123.tmp").write_bytes(b"half a checkpoint")  # an earlier version's name
    write_text(tmp_path / "model.pt", "whole")
    assert os.listdir(tmp_path) == ["model.pt"]


def test_a_temporary_being_written_by_a_live_process_is_left_alone(tmp_path):
    """Two processes writing one cache entry at once (e.g. torchrun's) must not delete each other's file."""
    import socket

    for writer in (f"{os.getppid()}@{socket.gethostname()}", f"{os.getpid()}@another-machine.example"):
        (tmp_path / f".model.pt.{writer}@xyz.tmp").write_bytes(b"in progress")
    write_text(tmp_path / "model.pt", "whole")
    assert len(os.listdir(tmp_path)) == 3


def test_check_outputs_names_the_first_existing_output_before_any_work(tmp_path):
    from aimonk.files import OutputExistsError, check_outputs

    (tmp_path / "run" / "evaluation").mkdir(parents=True)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "reliability.png").write_text("another run's figure")
    outputs = {tmp_path / "run": ["evaluation", None, "model.onnx"], tmp_path / "figures": ["reliability.png"]}
    with pytest.raises(OutputExistsError, match=rf"^{tmp_path / 'run' / 'evaluation'} already exists \(and 1 more"):
        check_outputs(outputs)
    check_outputs(outputs, overwrite=True)
    check_outputs({tmp_path / "run": ["model.onnx"], tmp_path / "new": ["a.png"]})

"""Experiment tracking: one interface behind TensorBoard and MLflow (`--log tensorboard|mlflow`), and none.

The run log calls it for every step's loss and every epoch's scores; the training workflow for the run's
configuration, its out-of-fold scores, its figures and its checkpoint. TensorBoard writes event files into
the run folder (`RUN/tensorboard`: `tensorboard --logdir RUN`); MLflow logs to $MLFLOW_TRACKING_URI, else to
MLflow's own default store (`sqlite:///mlflow.db` in the working directory: `mlflow ui` there), experiment
`aimonk`, the run named after its folder. aimonk never sets MLflow's environment variables.
"""
from __future__ import annotations

import json
import re
import time
import warnings
from pathlib import Path

from aimonk.config import TRACKERS

UNSAFE = re.compile(r"[^\w.\- /:]")  # characters MLflow refuses in a metric name (an attribute's name may have them)
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny"}  # what `pip install` needs for each


class Tracker:
    """Tracking that records nothing (`--log none`); the others override what they record."""

    kind = "none"
    where = ""

    def log_params(self, params: dict) -> None:
        pass

    def log_metrics(self, metrics: dict, step: int) -> None:
        pass

    def log_figure(self, path: Path, step: int = 0) -> None:
        pass

    def log_artifact(self, path: Path) -> None:
        pass

    def close(self, status: str = "FINISHED") -> None:
        pass

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, kind, error, trace) -> None:
        self.close("FINISHED" if kind is None else "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")


class TensorBoardTracker(Tracker):
    kind = "tensorboard"

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.where = str(Path(run_dir) / "tensorboard")
        self.writer = SummaryWriter(log_dir=self.where)

    def log_params(self, params: dict) -> None:
        self.writer.add_text("config", "```\n" + json.dumps(params, indent=2) + "\n```")

    def log_metrics(self, metrics: dict, step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def log_figure(self, path: Path, step: int = 0) -> None:
        from matplotlib import image

        picture = image.imread(path)[..., :3]
        self.writer.add_image(Path(path).stem, picture, step, dataformats="HWC")

    def close(self, status: str = "FINISHED") -> None:
        self.writer.close()


class MlflowTracker(Tracker):
    kind = "mlflow"

    def __init__(self, run_dir: Path):
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = mlflow.get_tracking_uri()  # $MLFLOW_TRACKING_URI, else MLflow's own default (sqlite:///mlflow.db here)
        check_reachable(uri)
        self.failed = False
        try:
            self.client, self.where = MlflowClient(uri), uri
            experiment = self.client.get_experiment_by_name("aimonk")
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment("aimonk")
            self.run_id = self.client.create_run(experiment_id, run_name=Path(run_dir).resolve().name).info.run_id
        except Exception as error:  # MLflow's errors for a store it cannot use are of many kinds
            raise ValueError(f"--log mlflow: the tracking store {uri} (MLFLOW_TRACKING_URI) cannot be used: "
                             f"{first_line(error)}") from None

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        self.send("the configuration", self.client.log_batch, self.run_id,
                  params=[Param(name, str(value)) for name, value in params.items()])

    def log_metrics(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.send(f"step {step}'s scores", self.client.log_batch, self.run_id,
                  metrics=[Metric(UNSAFE.sub("_", name), float(value), now, step) for name, value in metrics.items()])

    def log_figure(self, path: Path, step: int = 0) -> None:
        self.send(Path(path).name, self.client.log_artifact, self.run_id, str(path), "figures")

    def log_artifact(self, path: Path) -> None:
        self.send(Path(path).name, self.client.log_artifact, self.run_id, str(path))

    def close(self, status: str = "FINISHED") -> None:
        self.send("the run's end", self.client.set_terminated, self.run_id, status)

    def send(self, what: str, call, *args, **kwargs) -> None:
        """One call to the store; the first that fails is said once, in a warning, and ends the tracking, never
        the run (its files are written as usual)."""
        if self.failed:
            return
        try:
            call(*args, **kwargs)
        except Exception as error:  # MLflow's errors for a store that went away are of many kinds
            self.failed = True
            warnings.warn(f"--log mlflow: the tracking store {self.where} failed while logging {what} "
                          f"({first_line(error)}): nothing more is tracked; the run goes on and its files are "
                          "written as usual", stacklevel=2)


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """A tracking server answers within seconds, or a one-line error before any work (MLflow itself retries an
    unreachable server for minutes)."""
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri, timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # the server answered
    except (OSError, ValueError) as error:
        raise ValueError(f"--log mlflow: the tracking server {uri} (MLFLOW_TRACKING_URI) does not answer: "
                         f"{getattr(error, 'reason', error)}") from None


def open_tracker(kind: str, run_dir) -> Tracker:
    """The tracker for `--log kind` of a run writing to `run_dir` (nothing without a run folder); a one-line
    error naming the option and the package to install when it is missing, before any work."""
    if kind == "none" or run_dir is None:
        return Tracker()
    if kind not in TRACKERS:
        raise ValueError(f"--log must be one of {', '.join(TRACKERS)}, not {kind!r}")
    try:
        return TensorBoardTracker(Path(run_dir)) if kind == "tensorboard" else MlflowTracker(Path(run_dir))
    except ImportError:
        raise ValueError(f"--log {kind} needs the {PACKAGES[kind]} package: pip install {PACKAGES[kind]} "
                         "(or aimonk[tracking])") from None

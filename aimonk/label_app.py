"""The labelling app (ipywidgets 8) of notebook 05: one question at a time, the image large, Yes / No / Unknown /
Skip (or the keys 1 / 0 / u / s typed into its key box), undo, the model's "why?" on request, and after every
batch the out-of-fold F1 before and after retraining. It drives an aimonk.label_session.LabelSession, so that
tests answer through it without a browser."""
from __future__ import annotations

import html
import logging
import math

import ipywidgets as widgets
import numpy as np

from aimonk.data.images import load_image
from aimonk.label_session import LabelSession
from aimonk.plots.figure import overlay
from aimonk.widgets import png_bytes

log = logging.getLogger(__name__)
KEYS = {"1": 1.0, "y": 1.0, "0": 0.0, "n": 0.0, "u": None, "s": "skip"}
KIND_TEXT = {"unknown": "an NA cell: the label is unknown",
             "contradiction": "a doubtful label: the model, not trained on this image, disagrees"}


class LabelApp:
    """Answer the session's questions; each answer goes to the session (written and retrained every batch)."""

    def __init__(self, session: LabelSession, image_size: int = 384):
        self.session, self.image_size = session, image_size
        self.question, self.heatmap, self.answered = None, None, 0
        self.image = widgets.Image(format="png", layout=widgets.Layout(width=f"{image_size}px"))
        self.text = widgets.HTML()
        self.progress = widgets.HTML()
        self.scores = widgets.HTML(self.f1_line())
        self.status = widgets.HTML()
        self.buttons = {value: widgets.Button(description=label, tooltip=f"key {key}", button_style=style,
                                              layout=widgets.Layout(width="110px"))
                        for value, label, key, style in ((1.0, "Yes (1)", "1", "success"), (0.0, "No (0)", "0", "danger"),
                                                         (None, "Unknown (u)", "u", ""), ("skip", "Skip (s)", "s", ""))}
        for value, button in self.buttons.items():
            button.on_click(lambda _, value=value: self.answer(value))
        self.undo_button = widgets.Button(description="Undo last batch", icon="undo",
                                          layout=widgets.Layout(width="150px"))
        self.undo_button.on_click(lambda _: self.undo())
        self.why = widgets.ToggleButton(description="why?", tooltip="where the model sees this attribute (Grad-CAM)")
        self.why.observe(lambda _: self.render_image(), names="value")
        self.keys = widgets.Text(placeholder="type 1 / 0 / u / s here", continuous_update=True,
                                 layout=widgets.Layout(width="220px"))
        self.keys.observe(self.on_key, names="value")
        self.widget = widgets.VBox([
            self.progress,
            widgets.HBox([self.image, widgets.VBox([self.text, widgets.HBox(list(self.buttons.values())),
                                                    widgets.HBox([self.keys, self.why, self.undo_button]),
                                                    self.scores, self.status])]),
        ])
        self.next_question()

    def f1_line(self) -> str:
        f1, history = self.session.f1, self.session.history
        if f1 is None:
            return "<i>no out-of-fold F1: the model keeps no out-of-fold predictions</i>"
        if history:
            return f"<b>{html.escape(history[-1].describe())}</b>"
        return "out-of-fold F1 (each fold decided by thresholds from the other folds): " + html.escape(
            ", ".join(f"{name} {value:.3f}" for name, value in f1.items()))

    def next_question(self) -> None:
        questions = self.session.questions()
        self.question, self.heatmap = (questions[0] if questions else None), None
        pending = len(self.session.pending)
        self.progress.value = (f"answered {self.answered} · {pending} of {self.session.batch_size} in this batch "
                               f"(written and retrained at {self.session.batch_size}) · "
                               f"{len(questions)} questions left")
        if self.question is None:
            self.text.value = "<b>No question left.</b>"
            self.image.value = b""
            return
        q = self.question
        current = "NA" if math.isnan(q.current) else str(int(q.current))
        self.text.value = (f"<p style='font-size:1.2em'>Is <b>{html.escape(q.attribute)}</b> present in "
                           f"<b>{html.escape(q.filename)}</b>?</p>"
                           f"<p>{KIND_TEXT[q.kind]} (in the labels file: {current}); the model says "
                           f"{q.probability:.0%}, its threshold {q.threshold:.2f}</p>")
        self.render_image()

    def render_image(self) -> None:
        if self.question is None:
            return
        if not self.why.value:
            picture = load_image(self.session.data.image_dir / self.question.filename)
            self.image.value = png_bytes(np.asarray(picture), self.image_size)
            return
        resized = np.asarray(self.session.data.images[self.question.row])  # as the model sees it
        if self.heatmap is None:
            self.heatmap = self.session.predictor.explain(resized[None])[0][0][self.question.column]
        self.image.value = png_bytes(overlay(resized, self.heatmap), self.image_size)

    def answer(self, value) -> None:
        """Answer the question shown: 1.0 present, 0.0 absent, None unknown, "skip"."""
        if self.question is None:
            return
        try:
            retrained = self.session.answer(self.question, value)
        except ValueError as error:  # the labels file changed on disk, or cannot be written: answers kept
            self.status.value = f"<b style='color:#c62828'>{html.escape(str(error))}</b>"
            return
        self.status.value = ""
        self.answered += value != "skip"
        if retrained is not None:
            self.scores.value = self.f1_line()
        self.next_question()

    def on_key(self, change) -> None:
        typed = change["new"]
        if not typed:
            return
        self.keys.value = ""
        for key in typed.lower():
            if key in KEYS:
                self.answer(KEYS[key])

    def undo(self) -> None:
        try:
            retrained = self.session.undo()
        except ValueError as error:
            self.status.value = f"<b style='color:#c62828'>{html.escape(str(error))}</b>"
            return
        self.status.value = "nothing to undo" if retrained is None else "the last batch was taken back"
        self.scores.value = self.f1_line()
        self.next_question()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

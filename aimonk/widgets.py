"""The interactive prediction app (ipywidgets 8). The logic lives here so tests drive it without a browser."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from PIL import Image, ImageOps

from aimonk.decision.thresholds import decide
from aimonk.data.images import load_image, to_rgb
from aimonk.plots.figure import overlay

PLACEHOLDER = "— pick an image from the dataset —"
LISTED = 300  # the most names the dataset list holds at once; the search box narrows any number of images


def decode_upload(content: bytes) -> np.ndarray:
    """Bytes of an uploaded image file to an RGB uint8 array (EXIF orientation applied)."""
    with Image.open(io.BytesIO(content)) as image:
        return np.array(to_rgb(ImageOps.exif_transpose(image)))


def png_bytes(image: np.ndarray, size: int = 256) -> bytes:
    picture = Image.fromarray(image)
    picture.thumbnail((size, size))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def result_html(name: str, attributes, probabilities, thresholds) -> str:
    """A probability bar per attribute with its threshold marked, and PRESENT/ABSENT."""
    rows, decisions = [], decide(probabilities, thresholds)
    for attribute, p, t, present in zip(attributes, probabilities, thresholds, decisions):
        colour = "#2e7d32" if present else "#9e9e9e"
        rows.append(
            f"<tr><td style='padding-right:8px'><b>{html.escape(attribute)}</b></td>"
            f"<td><div style='position:relative;width:220px;height:16px;background:#eee'>"
            f"<div style='width:{p * 100:.1f}%;height:16px;background:{colour}'></div>"
            f"<div style='position:absolute;left:{t * 100:.1f}%;top:-2px;width:2px;height:20px;background:#c62828'>"
            f"</div></div></td>"
            f"<td style='padding-left:8px'>{p:.1%}</td>"
            f"<td style='padding-left:8px;color:{colour}'>{'✓ PRESENT' if present else '✗ ABSENT'}</td></tr>"
        )
    present = [a for a, flag in zip(attributes, decisions) if flag]
    return (f"<div><b>{html.escape(name)}</b><table>{''.join(rows)}</table>"
            f"<p>Attributes present: {html.escape(', '.join(present)) if present else 'none'}</p></div>")


class PredictionApp:
    """Upload an image or pick one from the dataset; move the thresholds; see the decision live."""

    def __init__(self, predictor, image_paths=()):
        self.predictor = predictor
        self.name, self.probabilities = None, None
        self.picture, self.heatmaps = None, None  # the image shown, and its Grad-CAM maps once asked "why?"
        # the button as wide as its text ("Upload i…" in the default 148 px)
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload image",
                                         layout=widgets.Layout(width="auto", min_width="150px"))
        self.paths = [str(p) for p in image_paths]
        self.search = widgets.Text(placeholder="part of a file name", description="Find",
                                   layout=widgets.Layout(width="240px"))
        self.picker = widgets.Dropdown(description="Dataset", layout=widgets.Layout(width="360px"))
        self.listed = widgets.Label()
        self.list_matching("")
        self.sliders = [
            widgets.FloatSlider(value=t, min=0.0, max=1.0, step=0.01, description=name, readout_format=".2f",
                                continuous_update=True, style={"description_width": "initial"})
            for name, t in zip(predictor.attributes, predictor.thresholds)
        ]
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="256px"))
        self.why = widgets.ToggleButton(value=False, description="why?", tooltip="overlay where the model sees the "
                                                                               "chosen attribute (Grad-CAM)")
        self.why_attribute = widgets.Dropdown(options=list(predictor.attributes), layout=widgets.Layout(width="160px"))
        self.result = widgets.HTML("<i>Upload an image or pick one from the dataset.</i>")
        self.upload.observe(self._on_upload, names="value")
        self.picker.observe(self._on_pick, names="value")
        self.search.observe(lambda change: self.list_matching(change["new"]), names="value")
        for slider in self.sliders:
            slider.observe(lambda _: self.render(), names="value")
        for control in (self.why, self.why_attribute):
            control.observe(lambda _: self.render_image(), names="value")
        # the controls wrap onto a second line in a narrow window, the image count on a line of its own
        self.widget = widgets.VBox([
            widgets.HBox([self.upload, self.search, self.picker], layout=widgets.Layout(flex_flow="row wrap")),
            self.listed,
            widgets.HBox([widgets.VBox([self.image, widgets.HBox([self.why, self.why_attribute])]),
                          widgets.VBox([self.result, widgets.Label("Thresholds"), *self.sliders])]),
        ])

    def list_matching(self, text: str) -> None:
        """The dataset list: the images whose file name contains `text` (any case), the first LISTED of them."""
        wanted = text.strip().lower()
        matching = [p for p in self.paths if wanted in Path(p).name.lower()]
        self.picker.options = [(PLACEHOLDER, "")] + [(Path(p).name, p) for p in matching[:LISTED]]
        shown = f"{len(matching)} of {len(self.paths)} images" if wanted else f"{len(self.paths)} images"
        self.listed.value = shown + (f", the first {LISTED} listed: type in Find to narrow"
                                     if len(matching) > LISTED else "")

    @property
    def thresholds(self) -> list[float]:
        return [slider.value for slider in self.sliders]

    def show(self, image: np.ndarray, name: str) -> None:
        """Predict once for a new image; thresholds only change the decisions afterwards."""
        self.name, self.picture, self.heatmaps = name, image, None
        self.probabilities = self.predictor.predict_array(image, name=name).probabilities[0]
        self.render_image()
        self.render()

    def render_image(self) -> None:
        """The image, or with "why?" on, the chosen attribute's heatmap over it (computed once per image)."""
        if self.picture is None:
            return
        if not self.why.value:
            self.image.value = png_bytes(self.picture)
            return
        resized = self.predictor.model_input(self.picture)
        if self.heatmaps is None:
            self.heatmaps = self.predictor.explain(resized[None])[0][0]
        column = list(self.predictor.attributes).index(self.why_attribute.value)
        self.image.value = png_bytes(overlay(resized, self.heatmaps[column]))

    def render(self) -> None:
        if self.probabilities is not None:
            self.result.value = result_html(self.name, self.predictor.attributes, self.probabilities,
                                            self.thresholds)

    def _on_upload(self, change) -> None:
        files = change["new"]
        if files:
            upload = files[0]
            try:
                image = decode_upload(bytes(upload["content"]))
            except Exception as error:  # any undecodable upload
                self.cannot_read(upload["name"], error)
                return
            self.picker.value = ""  # the dataset list no longer names the image shown before
            self.show(image, upload["name"])

    def _on_pick(self, change) -> None:
        if change["new"]:
            name = Path(change["new"]).name
            try:
                image = load_image(change["new"])
            except Exception as error:  # a dataset file that does not decode (zero-byte, truncated, too large)
                self.cannot_read(name, error)
                return
            self.show(image, name)

    def cannot_read(self, name: str, error: Exception) -> None:
        self.result.value = f"<b style='color:#c62828'>Cannot read {html.escape(name)}: {html.escape(str(error))}</b>"

    def snapshot(self) -> bytes:
        """A static PNG of what the app shows: the image and each attribute's probability against its threshold."""
        import matplotlib.pyplot as plt

        from aimonk.plots.figure import plot_text

        attributes = list(self.predictor.attributes)
        figure, (left, right) = plt.subplots(1, 2, figsize=(8, max(2.6, 0.5 * len(attributes) + 1)),
                                             gridspec_kw={"width_ratios": [1, 1.6]})
        left.axis("off")
        if self.picture is not None:
            left.imshow(self.picture)
            left.set_title(plot_text(self.name), fontsize=11)
        probabilities = self.probabilities if self.probabilities is not None else [0.0] * len(attributes)
        present = decide(np.asarray(probabilities), self.thresholds)
        rows = np.arange(len(attributes))[::-1]
        right.barh(rows, probabilities, color=["#2e7d32" if flag else "#9e9e9e" for flag in present])
        for row, threshold, p, flag in zip(rows, self.thresholds, probabilities, present):
            right.plot([threshold] * 2, [row - 0.4, row + 0.4], color="#c62828", lw=2)
            right.text(1.02, row, f"{p:.0%} {'PRESENT' if flag else 'absent'}", va="center", fontsize=11)
        right.set(xlim=(0, 1), yticks=rows, yticklabels=[plot_text(a) for a in attributes])
        right.tick_params(labelsize=11)
        right.set_title("probability (red: threshold)", fontsize=11)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
        plt.close(figure)
        return buffer.getvalue()

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The live widget where a widget manager holds its state (a running kernel); where it does not (a saved
        notebook opened later, an untrusted one, a rendered page), a static picture of it: PNG, and HTML."""
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        picture = self.snapshot()
        encoded = base64.b64encode(picture).decode("ascii")
        bundle["image/png"] = encoded
        bundle["text/html"] = (f"<img src='data:image/png;base64,{encoded}' alt='the prediction app'/>"
                               "<p><i>A static picture of the prediction app: run the notebook for the live app.</i></p>")
        bundle["text/plain"] = f"PredictionApp: {self.name or 'no image yet'} (run the notebook for the live app)"
        return bundle

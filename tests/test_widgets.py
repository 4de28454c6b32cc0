"""The prediction app driven as a user would: upload, pick, move a slider."""
import datetime
import io

import pytest
from PIL import Image

from aimonk.serve.predictor import Predictor
from aimonk.widgets import PredictionApp

pytestmark = pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")


@pytest.fixture(scope="module")
def app(trained_run, demo_dir):
    predictor = Predictor.load(trained_run[0] / "model.pt", device="cpu")
    return PredictionApp(predictor, sorted((demo_dir / "images").glob("*.jpg"))[:5])


def upload(app, content: bytes, name="photo.png"):
    app.upload.value = ({"name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
                         "last_modified": datetime.datetime.now(datetime.timezone.utc)},)


def png(colour=(200, 30, 30), size=(90, 60)):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_upload_shows_image_probabilities_and_decisions(app):
    upload(app, png())
    assert app.name == "photo.png" and app.probabilities.shape == (4,)
    assert bytes(app.image.value).startswith(b"\x89PNG")
    text = app.result.value
    assert "photo.png" in text and text.count("PRESENT") + text.count("ABSENT") == 4


def test_moving_a_slider_updates_the_decision_without_predicting_again(app, monkeypatch):
    upload(app, png((10, 120, 200)), "blue.png")
    probability = app.probabilities[0]
    monkeypatch.setattr(app.predictor, "predict_array", lambda *a, **k: pytest.fail("predicted again"))
    app.sliders[0].value = max(0.0, probability - 0.01)
    assert "✓ PRESENT" in app.result.value.split("</tr>")[0]
    app.sliders[0].value = min(1.0, probability + 0.01)
    assert "✗ ABSENT" in app.result.value.split("</tr>")[0]


def test_picking_a_dataset_image(app):
    path = app.picker.options[2][1]
    app.picker.value = path
    assert app.name == path.split("/")[-1] and app.name in app.result.value


def test_the_dataset_list_finds_any_of_many_images_by_name(app):
    many = PredictionApp(app.predictor, [f"/photos/image_{i}.jpg" for i in range(1000)])
    assert len(many.picker.options) == 1 + 300 and "1000 images, the first 300 listed" in many.listed.value
    many.search.value = "IMAGE_99"  # any case
    names = [name for name, _ in many.picker.options[1:]]
    assert names == ["image_99.jpg"] + [f"image_{i}.jpg" for i in range(990, 1000)]
    assert many.listed.value == "11 of 1000 images"
    many.search.value = ""
    assert len(many.picker.options) == 301


def test_a_broken_upload_says_so(app):
    upload(app, b"not an image", "broken.jpg")
    assert "Cannot read broken.jpg" in app.result.value


def test_why_overlays_the_chosen_attributes_heatmap_computed_once(app, monkeypatch):
    upload(app, png((30, 160, 60)), "green.png")
    plain = bytes(app.image.value)
    calls = []
    real = app.predictor.explain
    monkeypatch.setattr(app.predictor, "explain", lambda images: calls.append(1) or real(images))
    app.why.value = True
    first = bytes(app.image.value)
    app.why_attribute.value = app.predictor.attributes[3]
    fourth = bytes(app.image.value)
    assert first.startswith(b"\x89PNG") and len({plain, first, fourth}) == 3 and len(calls) == 1
    app.why.value = False
    assert bytes(app.image.value) == plain


def test_an_upload_and_the_same_file_predicted_from_disk_get_the_same_probabilities(app, tmp_path):
    """One preprocessing path: the widget's upload and `aimonk predict` on the file resize, lay out and
    normalise the image the same way."""
    import numpy as np

    pixels = np.random.default_rng(1).integers(0, 256, (123, 217, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    (tmp_path / "odd.png").write_bytes(buffer.getvalue())
    upload(app, buffer.getvalue(), "odd.png")
    from_disk = app.predictor.predict_paths([tmp_path / "odd.png"]).probabilities[0]
    np.testing.assert_allclose(app.probabilities, from_disk, atol=1e-6)


def test_an_upload_after_a_dataset_pick_leaves_the_dataset_list_at_its_placeholder(app):
    from aimonk.widgets import PLACEHOLDER

    app.picker.value = app.picker.options[1][1]
    upload(app, png((20, 200, 20)), "green.png")
    assert app.name == "green.png" and app.picker.value == "" and app.picker.label == PLACEHOLDER
    assert "green.png" in app.result.value


def test_the_controls_fit_their_text_and_wrap_instead_of_running_off_the_edge(app):
    assert app.upload.description == "Upload image" and app.upload.layout.width == "auto"
    controls = app.widget.children[0]
    assert controls.layout.flex_flow == "row wrap" and app.upload in controls.children
    assert app.listed not in controls.children and app.listed in app.widget.children  # the long count on its own line


def test_a_saved_run_carries_a_static_picture_of_the_app_beside_the_widget_view(app):
    import base64

    upload(app, png(), "photo.png")
    bundle = app._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # the live app where a kernel holds it
    picture = base64.b64decode(bundle["image/png"])
    assert picture.startswith(b"\x89PNG") and Image.open(io.BytesIO(picture)).size[0] > 300
    assert bundle["image/png"] in bundle["text/html"] and "live app" in bundle["text/html"]
    assert "VBox(" not in bundle["text/plain"] and "photo.png" in bundle["text/plain"]

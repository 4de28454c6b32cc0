"""Figures whose layout is computed by hand."""
import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot  # noqa: E402

from aimonk import plots  # noqa: E402


def test_an_image_grid_keeps_every_image_and_its_caption_inside_the_figure_without_overlap():
    images = np.zeros((7, 20, 30, 3), dtype=np.uint8)
    captions = ["name\n" + "\n".join(f"attribute {k}" for k in range(5))] * 7
    figure = plots.plot_image_grid(images, captions, columns=3, title="Seven")
    boxes = [ax.get_position() for ax in figure.axes]
    assert len(boxes) == 7 and all(0 <= b.x0 < b.x1 <= 1 and 0 <= b.y0 < b.y1 <= 1 for b in boxes)
    caption_height = 6 * 12 / 72 / figure.get_figheight()  # six lines of 12 points, as a share of the figure
    first_row, second_row = boxes[0], boxes[3]
    assert second_row.y1 <= first_row.y0 - caption_height  # the captions of a row end above the next row
    assert boxes[6].y0 - caption_height >= 0  # the last captions stay on the figure
    assert 1 - first_row.y1 < 0.6 / figure.get_figheight()  # only the title's band above the first row
    matplotlib.pyplot.close(figure)


def test_the_f1_comparison_value_labels_never_overlap():
    import itertools

    import pandas as pd

    from aimonk.plots import plot_f1_comparison

    table = pd.DataFrame({"f1@0.5": [1.0, 0.95, 0.99, 0.5], "f1@stored": [1.0, 0.97, 1.0, 0.7],
                          "always_present_f1": [1.0, 0.9, 0.0, 0.0]}, index=["Attr1", "Attr2", "Attr3", "Attr4"])
    figure = plot_f1_comparison(table)
    figure.canvas.draw()
    ax = figure.axes[0]
    boxes = [text.get_window_extent() for text in ax.texts]
    assert len(boxes) == 12 and not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    assert all(box.y1 <= ax.get_window_extent().y1 for box in boxes)  # inside the axes, under the title


def test_notebook_tables_format_each_number_by_its_kind_and_show_nan_as_a_dash():
    import numpy as np
    import pandas as pd

    from aimonk.plots import rounded, styled

    table = pd.DataFrame({"f1": [0.5435949237285387, np.nan], "positive_rate": [0.203905, 0.5],
                          "positives": [12.0, 3.0], "threshold": [0.31234, np.nan]},
                         index=pd.Index(["<b>Attr1</b>", "macro"], name="attribute"))
    page = styled(table, gradient=["f1"]).to_html()
    assert "0.544" in page and "20.4%" in page and ">12<" in page and "—" in page
    assert "0.5435949" not in page and "nan" not in page.lower() and "&lt;b&gt;Attr1&lt;/b&gt;" in page
    assert rounded(["a", "b"], [0.5435949237285387, 0.2]) == "a 0.54, b 0.20"


def test_a_styled_table_shows_integer_columns_whole_and_no_row_numbers():
    """A history's epochs or a frame of rows (02's learning table, 03's label issues, 04's predictions) shows its
    own columns, not a pandas index of row numbers beside them; a named index (attribute, epoch) stays."""
    import pandas as pd

    from aimonk.plots import styled

    rows = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.69314718, 0.5], "given": [1, 0]}, index=[3, 7])
    page = styled(rows).to_html()
    assert ">0.693<" in page and ">1<" in page and ">0<" in page and "1.000" not in page and "0.000" not in page
    assert ">3<" not in page and ">7<" not in page and 'class="row_heading' not in page
    named = styled(rows.set_index("epoch")).to_html()
    assert 'class="row_heading' in named and ">epoch<" in named
    mixed = styled(pd.Series({"backbone": "<b>x</b>", "lr": 0.003, "head_c": 1e-4, "tta": True}).to_frame()).to_html()
    assert ">0.003<" in mixed and ">0.0001<" in mixed and ">True<" in mixed and "&lt;b&gt;x&lt;/b&gt;" in mixed

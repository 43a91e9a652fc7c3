"""The course's one palette: a colour per class label, so that a class looks the same in every notebook,
figure and prediction overlay. Index 0 (background) is black."""

PALETTE = ["#000000", "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
           "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#800000", "#808000", "#000075"]


def colour(label: int) -> str:
    """The colour of class ``label`` (the palette repeats after 16 labels)."""
    return PALETTE[int(label) % len(PALETTE)]

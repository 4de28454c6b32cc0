"""The model: the backbone registry (ours and timm's), the classifier, frozen-backbone features, the recipe and
the checkpoint."""

"""The model: the backbone registry, the classifier, frozen-backbone features, the recipe and the checkpoint."""

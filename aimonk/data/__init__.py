"""Labelled image folders: label files, decoded images, splits, augmentation, the demo data, exploration."""

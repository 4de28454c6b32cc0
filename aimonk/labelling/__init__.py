"""Writing a labeller's answers safely into the user's own label file (labels.txt or labels.csv)."""

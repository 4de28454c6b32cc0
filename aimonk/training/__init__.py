"""Training: the loop, the strategies of each recipe, losses, the linear probe, the run log, cross-validation."""

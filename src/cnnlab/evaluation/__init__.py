"""Evaluation: metrics, reports of a split, predictions on new images."""

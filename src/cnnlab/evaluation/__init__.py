"""Evaluation: metrics, reports of a split, predictions on new images."""

TTA_MODES = ("flip", "shift", "flip-shift", "10crop")
"""Test-time augmentation modes (evaluation/inference.py); here, so the command line can list
them without importing torch."""
MIRRORING = ("flip", "flip-shift", "10crop")
"""The modes whose views include mirror images."""
TTA_HELP = ("average the softmax over views: the image and its mirror image (flip); the image and "
            "it moved a pixel up-left and down-right, none mirrored, for data whose mirror image is "
            "another class, such as signs and digits (shift); all six (flip-shift); or ten crops (10crop)")

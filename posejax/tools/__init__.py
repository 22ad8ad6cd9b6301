"""Tools on trained runs: inference on videos and custom keypoints, rendering, export, streaming, reference-checkpoint import, 2D detection."""

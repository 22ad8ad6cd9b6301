"""The vocabulary of poses: skeletons and keypoint layouts, cameras and projection, action names, pose errors (MPJPE and its protocols)."""

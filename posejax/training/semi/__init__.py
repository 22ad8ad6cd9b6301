"""Semi-supervised training: the projection and bone-length losses, the joint step, the unlabeled data."""

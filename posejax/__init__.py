"""posejax: 3D human pose estimation in video with temporal convolutions, in JAX.

A JAX/Flax reimplementation of VideoPose3D (Pavllo et al., CVPR 2019) with
action-based training: one model per Human3.6M action, all trained at once by
one vmapped, sharded step.
"""

__version__ = "0.1.0"

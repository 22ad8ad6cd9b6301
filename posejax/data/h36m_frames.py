"""Human3.6M's frames per action in the default split, counted over all 4 cameras.

Training subjects S1, S5, S6, S7, S8; test subjects S9, S11. A sequence's mocap frames are
these counts / 4: each camera's video is cropped to the mocap length on load. The AB packing
(slots, useful fraction) and the synthetic generator's `--proportions h36m` follow them.
"""

from __future__ import annotations

import numpy as np

from posejax.pose.actions import ACTIONS

NUM_CAMERAS = 4

TRAIN_FRAMES: dict[str, int] = {
    "Directions": 100936, "Discussion": 158788, "Eating": 109424, "Greeting": 72436, "Phoning": 115832,
    "Photo": 76048, "Posing": 69468, "Purchases": 63080, "Sitting": 116472, "SittingDown": 129232,
    "Smoking": 133252, "Waiting": 115296, "WalkDog": 79412, "Walking": 132744, "WalkTogether": 87332}
TEST_FRAMES: dict[str, int] = {
    "Directions": 26428, "Discussion": 64244, "Eating": 39308, "Greeting": 30644, "Phoning": 56088,
    "Photo": 29320, "Posing": 27280, "Purchases": 19284, "Sitting": 40276, "SittingDown": 33324,
    "Smoking": 55552, "Waiting": 37864, "WalkDog": 28304, "Walking": 29264, "WalkTogether": 26164}
SPLIT_FRAMES: dict[str, dict[str, int]] = {"train": TRAIN_FRAMES, "test": TEST_FRAMES}


def frames_array(split: str = "train") -> np.ndarray:
  """(15,) int64 camera frames per action of `split` ('train' or 'test'), in `ACTIONS` order."""
  return np.array([SPLIT_FRAMES[split][a] for a in ACTIONS], np.int64)


def mocap_frames(split: str, action: str, scale: float = 1.0) -> int:
  """Mocap frames of `action` in `split` at `scale` times Human3.6M's size (rounded)."""
  return int(round(SPLIT_FRAMES[split][action] // NUM_CAMERAS * scale))

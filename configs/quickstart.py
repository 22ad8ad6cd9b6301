"""Quick start on synthetic data: 15 small action-based models (or one common model) on a CPU.

  python train.py --config configs/quickstart.py --workdir /tmp/qs_ab
  python train.py --config configs/quickstart.py --workdir /tmp/qs_common --config.mode=common

Generates Human3.6M-like synthetic files in data/synthetic on first use (no download, a few
seconds), then trains a 27-frame model with 64 channels: the seed's F=27, UE=15 experiment in
miniature. Action-based mode trains the 15 models at once for 1 common-equivalent epoch (15 AB
epochs each, budget "fixed", about 300 lock-step steps of 15 x 256 windows); common mode trains
one model for 1 epoch on the same data (301 steps of 256: 15 times fewer samples in all). Both
end with the per-action Protocol #1/#2/#3 and MPJVE table (TTA). On a 2-core CPU: about 1.5
minutes (72 s of training) in action-based mode, about 35 s (6.5 s of training) in common mode;
Protocol #1 averages about 137 mm (AB) and 100 mm (common) on these short noisy synthetic
sequences. This checks the pipeline end to end; it is not a benchmark of the method.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.mode = "action_based"
  config.data.dir = "data/synthetic"
  config.data.keypoints = "synthetic"
  config.data.synthetic_frames = 64
  config.model.filter_widths = (3, 3, 3)
  config.model.channels = 64
  config.train.epochs = 1
  config.train.batch_size = 256
  config.train.logs_per_epoch = 3
  config.checkpoint.every_epochs = 1
  return config

"""Quick start on synthetic data: 15 small action-based models (or one common model) on a CPU.

  python train.py --config configs/quickstart.py --workdir /tmp/qs_ab
  python train.py --config configs/quickstart.py --workdir /tmp/qs_common --config.mode=common

Generates Human3.6M-like synthetic files in data/synthetic on first use (no download, a few
seconds), then trains a 27-frame model with 64 channels: the seed's F=27, UE=15 experiment in
miniature. Action-based mode trains the 15 models at once for 1 common-equivalent epoch (15 AB epochs
each, budget "fixed"); common mode trains one model for 1 epoch on the same data (15 times
fewer samples in all). The data are 128 frames per sequence (76,904 training frames).

Measured on a shared 2-core CPU with `bash scripts/quickstart_figures.sh` (which regenerates
these figures): action-based 36 s of training, 74 s in all (14 of the 15 models per global step,
645 global steps, 99.9 % of computed model-steps useful), Protocol #1 average 119.7 mm, MPJVE
4.58 mm; common 2.6 s of training, 77.9 mm, 4.76 mm. With this little data and compute the
per-action models overfit their own action (as the seed's F=27, UE=15 row also shows, AB is
worse there); this run checks the whole pipeline, it is not a benchmark.

The AB run also trains the action classifier (5 epochs over all actions, 64 channels; 11 s on
the same CPU) that routes test sequences without labels. Measured with `python eval.py --workdir
/tmp/qs_ab --routing=soft --common /tmp/qs_common --cross_action`: classifier accuracy 78.0% per
sequence (top-3 94.5%), 66.0% per frame (top-3 86.5%); Protocol #1 averages AB oracle 119.7 mm
(needs labels), predicted 117.2 mm, soft 115.2 mm, common model 77.9 mm; the best per-action
routing of the cross-action matrix 111.3 mm.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.mode = "action_based"
  config.data.dir = "data/synthetic"
  config.data.keypoints = "synthetic"
  config.data.synthetic_frames = 128
  config.model.filter_widths = (3, 3, 3)
  config.model.channels = 64
  config.train.epochs = 1
  config.train.batch_size = 256
  config.train.logs_per_epoch = 3
  config.checkpoint.every_epochs = 1
  config.classifier.channels = 64
  return config

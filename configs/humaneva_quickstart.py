"""Quick start on synthetic HumanEva-I-like data: Walk, Jog and Box on a CPU, in minutes.

  python train.py --config configs/humaneva_quickstart.py --workdir /tmp/he_ab
  python train.py --config configs/humaneva_quickstart.py --workdir /tmp/he_common --config.mode=common

configs/humaneva15.py in miniature: generates HumanEva-I-like files in data/synthetic_humaneva
on first use (no download, about a second: persons S1-S3, 5 actions, 3 cameras, 60 fps, trials
of about 600 frames cut into the Train/Validate splits and mocap chunks), then trains on the
COCO-layout detector-like 2D ('synthetic', like the published detectron_pt_coco) with the
reference's -a Walk,Jog,Box prefix filter. Action-based mode trains the 3 models at once,
3 AB epochs each per common epoch (train.unit_epochs = 3); common mode one model.

Measured on a shared 2-core CPU (7,989 training frames, 7,971 test frames;
27 frames, 128 channels, batch 128, 60 epochs, lr decay 0.97; compilation takes 8-15 s more
without JAX's compilation cache): action-based 98 s of training (2 min 5 s wall),
Protocol #1 average 40.3 mm (Walk 33.8, Jog 37.6, Box 49.4), P-MPJPE 28.0 mm, MPJVE 5.88 mm;
common 33 s of training (43 s wall), 39.0 mm (35.3, 37.7, 44.2), P-MPJPE 29.7 mm, MPJVE
6.38 mm. Per-subject tables follow (eval.by_subject, as the reference's
--by-subject). Synthetic data: it checks the whole pipeline, it is not a benchmark.
"""

from configs import humaneva15


def get_config():
  config = humaneva15.get_config()
  config.mode = "action_based"
  config.data.dir = "data/synthetic_humaneva"
  config.data.keypoints = "synthetic"
  config.data.synthetic_frames = 600
  config.model.channels = 128
  config.train.epochs = 60
  config.train.lr_decay = 0.97
  config.checkpoint.every_epochs = 10
  return config

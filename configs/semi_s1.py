"""Semi-supervised training (VideoPose3D section 4), the reference's documented example.

  python train.py --config configs/semi_s1.py --workdir runs/semi_s1

The reference's `-k gt --subjects-train S1 --subset 0.1 --subjects-unlabeled S5,S6,S7,S8 -e 200
-lrd 0.98 -arc 3,3,3 --warmup 5 -b 64`: ground-truth 2D keypoints, 10 % of S1 labeled, S5-S8
unlabeled (2D and cameras only), 200 epochs, receptive field 27, 5 supervised warm-up epochs,
batch 64. A trajectory model trains beside the pose model; after warm-up the unlabeled
predictions (pose + trajectory) are projected through each sequence's camera and compared
with the input 2D keypoints, and a bone-length term ties the unlabeled poses' bone lengths to
the labeled ones'. The reference reports about 65.2 mm Protocol #1, and about 80.7 mm for the
same run without the unlabeled subjects (`--config.data.unlabeled_subjects=`).
Needs data/data_3d_h36m.npz and data/data_2d_h36m_gt.npz (see README). The checkpoints hold
the trajectory model too; eval.py, --render, --export and posejax.tools.infer use it.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.keypoints = "gt"
  config.data.train_subjects = ("S1",)
  config.data.subset = 0.1
  config.data.unlabeled_subjects = ("S5", "S6", "S7", "S8")
  config.train.epochs = 200
  config.train.lr_decay = 0.98
  config.model.filter_widths = (3, 3, 3)
  config.train.warmup = 5
  config.train.batch_size = 64
  return config

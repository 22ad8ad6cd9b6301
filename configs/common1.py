"""Seed experiment F=1, UE=15, baseline: one per-frame model (-arc 1), one epoch on all actions.

  python train.py --config configs/common1.py --workdir runs/common1

Reference command: `python run.py -e 1 -k cpn_ft_h36m_dbb -arc 1 -cho all` (89,139 parameters,
receptive field 1). Paper (Table I/II, VideoPose3D row): 75.5 mm MPJPE, 11.7 mm MPJVE
action-wise averages with TTA. 15 log points (one per 1/15 epoch) line up with the 15 AB
epochs of configs/ab1.py. Time: 3,047 steps of batch 1024; minutes on a GPU.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.mode = "common"
  config.model.filter_widths = (1,)
  config.train.epochs = 1
  config.train.logs_per_epoch = 15
  return config

"""Seed experiment F=27, UE=15, baseline: one epoch of the 27-frame model on all actions.

  python train.py --config configs/common27.py --workdir runs/common27

Reference: `python run.py -e 1 -k cpn_ft_h36m_dbb -arc 3,3,3 -cho all`. Paper (Table I/II): 61.8 mm
MPJPE, 3.80 mm MPJVE. 15 log points line up with the AB epochs of configs/ab27.py.
Time: 3,047 steps of batch 1024 (minutes on a GPU).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.mode = "common"
  config.model.filter_widths = (3, 3, 3)
  config.train.epochs = 1
  config.train.logs_per_epoch = 15
  return config

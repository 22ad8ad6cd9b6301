"""Seed experiment F=27, UE=15, action-based: 15 models of 27 frames, 15 epochs of their action each.

  python train.py --config configs/ab27.py --workdir runs/ab27

Reference: `python run.py -e 15 -k cpn_ft_h36m_dbb -arc 3,3,3 -cho $ACTION` per action. Paper (Table
I/II, Ours): 67.1 mm MPJPE (69.9 mm with the logged WalkDog value, reference A9.2),
3.63 mm MPJVE. Schedule: 4,652 global steps of 10 slots x 1024 samples (98.2 % of computed model-steps
useful; `python benchmarks/accelerator.py` prints the schedule lines).
"""

from configs import common27


def get_config():
  # The baseline's settings exactly, one model per action: the seed's controlled comparison.
  config = common27.get_config()
  config.mode = "action_based"
  return config

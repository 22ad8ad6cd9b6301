"""Seed experiment F=1, UE=15, action-based: 15 per-frame models, 15 epochs of their own action each.

  python train.py --config configs/ab1.py --workdir runs/ab1

Reference: `python run.py -e 15 -k cpn_ft_h36m_dbb -arc 1 -cho $ACTION` for each of the 15 actions,
here one vmapped run. Budget "fixed" (unit_epochs = 15 per common epoch). Paper (Table I/II,
Ours row): 73.2 mm MPJPE, 11.6 mm MPJVE (averages over the 15 models, oracle routing).
One log point per AB epoch (15). Schedule: 4,652 global steps of 10 slots x 1024 samples (98.2 % of computed model-steps
useful; `python benchmarks/accelerator.py` prints the schedule lines).
"""

from configs import common1


def get_config():
  # The baseline's settings exactly, one model per action: the seed's controlled comparison.
  config = common1.get_config()
  config.mode = "action_based"
  return config

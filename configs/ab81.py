"""Action-based 81-frame training, 80 common-equivalent epochs (1,200 AB epochs per action).

  python train.py --config configs/ab81.py --workdir runs/ab81

Counterpart of configs/common81.py with the seed method; no published result. The lr
(0.95 per AB epoch) is below 1e-6 after about 150 AB epochs (reference A9.3); try
--config.train.budget=equal_samples for schedules that advance per unit of data.
"""

from configs import common81


def get_config():
  # The baseline's settings exactly, one model per action: the seed's controlled comparison.
  config = common81.get_config()
  config.mode = "action_based"
  return config

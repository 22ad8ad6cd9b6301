"""Seed experiment F=243, UE=1200, action-based: 15 models, 1,200 AB epochs each (= 80 common epochs).

  python train.py --config configs/ab243.py --workdir runs/ab243

Reference: `python run.py -e 1200 -k cpn_ft_h36m_dbb -arc 3,3,3,3,3 -cho $ACTION` per action.
Paper (Table I/II/III): 50.5 mm MPJPE, 3.08 mm MPJVE; its 56,921 s training time is that of
ONE action (Eating), reference A9.2. One log point per 15 AB epochs (Table IV). The
lr collapses below 1e-6 after about 150 AB epochs (9.3): --config.train.budget=equal_samples
gives the budget-matched variant. Schedule: 372,160 global steps of 10 slots x 1024 samples (98.2 %
of computed model-steps useful; the seed's lock-step form computes 65.5 %). On a GPU add
--config.model.compute_dtype=bfloat16; not yet timed on one (the README estimates it from XLA's
cost analysis: 1.1 GFLOP per sample, 3.7 G samples).
"""

from configs import common243


def get_config():
  # The baseline's settings exactly, one model per action: the seed's controlled comparison.
  config = common243.get_config()
  config.mode = "action_based"
  return config

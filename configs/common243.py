"""Seed experiment F=243, 80 epochs, baseline (README "Large-batch, Large-epoch").

  python train.py --config configs/common243.py --workdir runs/common243

Reference: `python run.py -e 80 -k cpn_ft_h36m_dbb -arc 3,3,3,3,3 -cho all` (16,952,371 parameters).
Paper (Table I/II/III): 48.2 mm MPJPE, 2.49 mm MPJVE; 176,976 s training on a shared GPU
(reference README: about 24 hours on a Pascal GPU); released model: 46.8 mm. On a GPU add
--config.model.compute_dtype=bfloat16; not yet timed on one (estimate from XLA's cost analysis:
250 M samples x 1.1 GFLOP, about 11 minutes of steps at 40 % of an H100/H200's bf16 peak).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.mode = "common"
  config.model.filter_widths = (3, 3, 3, 3, 3)
  config.train.epochs = 80
  return config

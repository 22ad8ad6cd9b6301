"""Reference 81-frame training: one model on all actions, 80 epochs (no seed experiment at F=81).

  python train.py --config configs/common81.py --workdir runs/common81

Reference: `python run.py -e 80 -k cpn_ft_h36m_dbb -arc 3,3,3,3`; README: 47.7 mm (CPN detections
with ground-truth boxes), about 11 hours on a Pascal GPU.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.mode = "common"
  config.model.filter_widths = (3, 3, 3, 3)
  config.train.epochs = 80
  return config

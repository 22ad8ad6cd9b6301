"""The reference's HumanEva-I experiment: one 27-frame model on Walk, Jog and Box (multi-action).

  python train.py --config configs/humaneva15.py --workdir runs/humaneva15

Reference (V16): `python run.py -d humaneva15 -k detectron_pt_coco -str
Train/S1,Train/S2,Train/S3 -ste Validate/S1,Validate/S2,Validate/S3 -b 128 -e 1000 -lrd 0.996
-a Walk,Jog,Box --by-subject`, about 50 minutes on the reference's GPU; its released model of
these settings (pretrained_humaneva15_detectron.bin) gives 33.0 mm. Defaults otherwise: 3,3,3
(27 frames), 1024 channels, dropout 0.25, lr 1e-3, flip augmentation, TTA.

Needs data/data_3d_humaneva15.npz (`python -m posejax.data.prepare_humaneva --from-mat
converted_15j --convert-3d --out data`) and data/data_2d_humaneva15_detectron_pt_coco.npz (the
published detections, or `--convert-2d DETECTIONS --source detectron_pt_coco`). COCO keypoints
in, the 15 HumanEva joints out. Actions match by name prefix as the reference's -a does
('Walk' selects the 'Walking 1 chunk<i>' sequences); action_based mode trains the three models
(train.unit_epochs = 3: one common epoch is 3 epochs of one action's data).
"""

from configs import default
from posejax.data import humaneva


def get_config():
  config = default.get_config()
  config.mode = "common"
  config.actions = "Walk,Jog,Box"
  config.action_match = "prefix"
  config.data.dataset = "humaneva15"
  config.data.keypoints = "detectron_pt_coco"
  config.data.train_subjects = humaneva.TRAIN_SUBJECTS
  config.data.test_subjects = humaneva.TEST_SUBJECTS
  config.model.filter_widths = (3, 3, 3)
  config.train.epochs = 1000
  config.train.batch_size = 128
  config.train.lr_decay = 0.996
  config.train.unit_epochs = 3
  config.checkpoint.every_epochs = 50
  config.eval.by_subject = True
  return config

"""Reference VideoPose3D training: one model on all 15 actions (common mode), CPN detections.

  python train.py --config configs/default.py --workdir runs/default

Defaults of the reference `run.py` (reference V15): `-k cpn_ft_h36m_dbb -arc 3,3,3`
(receptive field 27), 1024 channels, batch 1024, 60 epochs, Adam/AMSGrad lr 1e-3 decaying
0.95 per epoch, BN momentum 0.1 -> 0.001, dropout 0.25, flip augmentation, TTA at test time.
Needs data/data_3d_h36m.npz and data/data_2d_h36m_cpn_ft_h36m_dbb.npz (see README).
Expected: about 48.8 mm Protocol #1 (the reference's result for 27 frames); the reference
needed about 6 hours on a Pascal GPU for 80 epochs.

Every other config imports this one and changes what differs. Keys:
  mode: 'common' (one model, all selected actions) or 'action_based' (one model per action).
  actions: '*' or e.g. 'Sitting,Walking' (canonical names of data.dataset's actions).
  action_match: how `actions` selects: 'exact' (default; canonical action names, 'Sitting'
    never takes 'SittingDown') or 'prefix' (the reference's -a filter: a sequence is kept when
    its name starts with one of the strings, so 'Sitting' also takes 'SittingDown', 'Walk'
    takes Walking, WalkDog and WalkTogether, 'Walking 1' only that trial; the models of
    action_based mode are the actions of the kept sequences).
  data.dataset: 'h36m' (Human3.6M) or 'humaneva15' (HumanEva-I, 15 joints: data.dir holds
    data_3d_humaneva15.npz and data_2d_humaneva15_<keypoints>.npz, subjects like 'Train/S1';
    see configs/humaneva15.py). Empty train/test subject lists take the dataset's default split.
  train.budget: 'fixed' (AB: epochs * unit_epochs own epochs per action), 'frame_matched'
    (epochs * floor(sum f / f(a)), equation 2) or 'equal_samples' (every action draws the
    samples of `epochs` common epochs; lr/BN schedules advance per unit of data).
  train.logs_per_epoch: log points (validation, metrics.jsonl line) per common epoch.
  checkpoint.every_epochs: checkpoint every N log points (and at the end, and on SIGTERM).
  data.source: 'npz' (data.dir holds data_3d_h36m.npz and data_2d_h36m_<keypoints>.npz) or
    'tfds' (Human3.6M only; data.dir is a TFDS data dir, local or gs://..., holding
    h36m_posejax/<keypoints> built by `python -m posejax.data.tfds_h36m --data-dir NPZ_DIR
    --out DIR`). Both give the same records and dataset fingerprint; data.synthetic_frames
    applies to 'npz' only.
  classifier.enabled: the action classifier that routes test sequences without labels (None:
    on in action-based mode); classifier.epochs/channels/filter_widths size it.
  data.synthetic_frames: > 0 generates synthetic files when missing, only into a missing or
    empty data.dir or one the generator wrote before (.posejax_synthetic.json).
  data.shuffle_seed: seed of the training data order only (None: config.seed). `seed` sets the
    initial weights (and dropout); with shuffle_seed fixed, changing `seed` keeps the order.

Options of the reference's run.py (reference V15), by its flag:
  --subset F               data.subset: fraction of the training data; each sequence keeps one
                           contiguous run of frames chosen by a hash of its length (the
                           reference's deterministic_random), the same on every run.
  --downsample N           data.downsample: every N-th frame of the training AND test data.
  --stride N               train.stride: chunked training; an example is a chunk of N output
                           frames (N + RF - 1 input frames, edge-padded), batch_size // N chunks
                           per batch, trained with the dilated model (epochs count chunks).
  --disable-optimizations  train.dense_training: train the dilated model (not the strided one)
                           also at stride 1.
  -r / --resume FILE       checkpoint.resume_from: a step of this workdir, or a path
                           (OTHER/checkpoints/STEP, or a workdir: its newest step) to start a
                           fresh workdir from; unset: the workdir's newest checkpoint.
  --subjects-unlabeled L   data.unlabeled_subjects: semi-supervised training (Human3.6M only):
                           a trajectory model trains beside each pose model, and the 2D
                           reprojection of the unlabeled subjects' predictions through their
                           cameras (plus a bone-length term) joins the loss (see
                           configs/semi_s1.py; data.train_subjects are the labeled subjects).
  --warmup N               train.warmup: epochs of supervised training first (default 1).
  --linear-projection      train.linear_projection: pinhole projection without distortion.
  --no-bone-length         train.bone_length = False.
  --no-proj                train.projection_loss = False.
  2D keypoints with more than 2 features (x, y, confidence...) are used as they are (only x, y
  are normalized; flipping negates x only); the model's input width follows the data.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.mode = "common"  # "common" (one model, all actions) or "action_based" (one per action)
  config.actions = "*"  # "*" or e.g. "Sitting,Walking": the actions trained and evaluated
  config.action_match = "exact"  # how `actions` selects: "exact" names or "prefix" (the -a filter)
  config.seed = 1234  # initial weights and dropout (and the data order unless data.shuffle_seed)
  config.distributed = False  # jax.distributed.initialize() for multi-host runs
  # JAX's persistent compilation cache; None: ~/.cache/posejax/xla, '': off.
  config.compilation_cache_dir = ml_collections.config_dict.placeholder(str)

  config.data = ml_collections.ConfigDict()
  config.data.dataset = "h36m"  # "h36m" (Human3.6M) or "humaneva15" (HumanEva-I, 15 joints)
  config.data.source = "npz"  # "npz" files or "tfds" (data.dir is then a TFDS data dir)
  config.data.dir = "data"  # folder of the dataset files (a TFDS data dir with source "tfds")
  config.data.keypoints = "cpn_ft_h36m_dbb"  # 2D detections: data_2d_<dataset>_<keypoints>.npz
  config.data.train_subjects = ("S1", "S5", "S6", "S7", "S8")  # training subjects; empty: the default split
  config.data.test_subjects = ("S9", "S11")  # test subjects; empty: the dataset's default split
  # Held-out validation split for checkpoint selection (eval.py --checkpoint=best), e.g. ("S8",)
  # moved out of train_subjects. Empty (the reference): no selection, the final model is evaluated;
  # the test subjects are never used to choose a checkpoint.
  config.data.valid_subjects = ()
  config.data.synthetic_frames = 0  # > 0: generate synthetic files of this length when missing
  config.data.synthetic_seed = 0  # seed of the generated synthetic data
  # Seed of the training data order (the reference fixes it); None: config.seed. `seed` alone
  # sets the initial weights and dropout.
  config.data.shuffle_seed = ml_collections.config_dict.placeholder(int)
  config.data.subset = 1.0  # --subset: fraction of each training sequence (a contiguous run)
  config.data.downsample = 1  # --downsample: every N-th frame, training and evaluation
  config.data.unlabeled_subjects = ()  # --subjects-unlabeled: non-empty turns semi-supervision on

  config.model = ml_collections.ConfigDict()
  config.model.family = "tcn"  # model family: "tcn" (the temporal convolutional network)
  config.model.filter_widths = (3, 3, 3)  # -arc: odd width per layer; receptive field = their product
  config.model.channels = 1024  # -ch: channels of every hidden layer
  config.model.dropout = 0.25  # -drop: dropout rate
  config.model.causal = False  # --causal: each pose from past and present frames only
  config.model.dense = False  # --dense: dense instead of dilated convolutions
  # 'float32' (the reference's numbers; CPUs) or 'bfloat16' (GPUs/TPUs: bf16 convolutions and
  # matmuls; parameters, optimizer state, BatchNorm statistics, loss and metrics stay float32).
  config.model.compute_dtype = "float32"

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 60  # -e: common epochs (the budget of every action model, see train.budget)
  config.train.batch_size = 1024  # -b: training examples per step and model
  config.train.lr = 1e-3  # -lr: initial learning rate (Adam, AMSGrad)
  config.train.lr_decay = 0.95  # -lrd: learning-rate factor per epoch
  config.train.bn_momentum_start = 0.1  # BatchNorm momentum of the first epoch
  config.train.bn_momentum_end = 0.001  # BatchNorm momentum reached in the last epoch
  config.train.augment = True  # flip augmentation (not --no-data-augmentation)
  # --stride: output frames per training example (chunk); > 1 trains the dilated model on
  # batch_size // stride chunks of stride + RF - 1 frames.
  config.train.stride = 1
  config.train.dense_training = False  # --disable-optimizations: dilated model at stride 1 too
  # Semi-supervised training (data.unlabeled_subjects non-empty), the reference's flags:
  config.train.warmup = 1  # --warmup: supervised-only epochs before semi-supervision
  config.train.linear_projection = False  # --linear-projection: pinhole projection, no distortion
  config.train.bone_length = True  # semi-supervised bone-length term (not --no-bone-length)
  config.train.projection_loss = True  # semi-supervised 2D reprojection loss (not --no-proj)
  config.train.budget = "fixed"  # or "frame_matched", "equal_samples": epochs of each action model
  config.train.unit_epochs = 15  # budget "fixed": own epochs per action per common epoch
  config.train.logs_per_epoch = 1  # log points (validation, metrics.jsonl line) per common epoch
  config.train.progress = True  # progress bar while training
  # Where training windows are gathered: 'device' (tables resident on the accelerator, the
  # step gathers its windows), 'host' (tf.data), or 'auto' (device when the tables fit).
  config.train.input = "auto"
  config.train.slots = 0  # models per global step (0: the most with >= 97 % useful model-steps)
  # device memory in GiB the compiled step may use (0: what the device reports; CPUs report
  # none); a step that does not fit runs with fewer slots
  config.train.device_memory_gib = 0.0
  config.train.steps_per_call = 16  # global steps per compiled call on the device path

  config.eval = ml_collections.ConfigDict()
  config.eval.tta = True  # flip test-time augmentation (not --no-test-time-augmentation)
  config.eval.validate = True  # per-log-point test MPJPE/MPJVE (no TTA)
  # Per-log-point MPJPE of each model on its own labeled training sequences in eval mode (no
  # dropout, BatchNorm running statistics, no TTA): the reference's 3d_eval, which it computes
  # at every epoch unless --no-eval. Off by default: a whole pass over the training set.
  config.eval.train_metrics = False
  config.eval.by_subject = False  # --by-subject: per-subject result tables too
  config.eval.chunk = 512  # output frames per evaluation chunk (fixed-shape pieces of a sequence)
  # Chunks per slice and evaluation step; None: about chunk_plan.frames_per_step() output frames.
  config.eval.batch = ml_collections.config_dict.placeholder(int)

  # The action classifier (posejax.evaluation.classifier): a temporal network over 2D keypoint windows that
  # routes test sequences to the per-action models without labels; trained after them, in the
  # same run, into WORKDIR/classifier. Batch size, lr, schedules, dropout: those of the run.
  config.classifier = ml_collections.ConfigDict()
  # Route test sequences by their predicted action; None: on in action-based mode.
  config.classifier.enabled = ml_collections.config_dict.placeholder(bool)
  config.classifier.epochs = 5  # epochs over all selected actions' training windows
  config.classifier.channels = 256  # channels of its hidden layers
  config.classifier.filter_widths = ()  # its filter widths; empty: model.filter_widths

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_epochs = 10  # checkpoint every N log points (and at the end, on SIGTERM)
  # also checkpoint every N minutes of training, between log points (0: off); for runs whose
  # log points are hours apart on preemptible machines
  config.checkpoint.every_minutes = 0.0
  config.checkpoint.keep = 3  # newest checkpoints kept (plus the best with a validation split)
  # --resume: a step of this workdir or a checkpoint path to start from (None: the newest here).
  config.checkpoint.resume_from = ml_collections.config_dict.placeholder(str)

  config.sharding = ml_collections.ConfigDict()
  # Devices the action models are split over; 0: the largest divisor of the device count <= models.
  config.sharding.action_devices = 0
  return config

"""An action classifier from 2D keypoints: routing test sequences to per-action models without labels.

The classifier is the VideoPose3D temporal network (`posejax.models.tcn.TemporalModel`: the same
strided training form, dilated evaluation form and receptive-field machinery) whose last layer
gives C class logits instead of 3D joints, C = the run's actions. It trains with cross-entropy
on the training subjects' flip-augmented windows, gathered on the device from the WindowTable of
all actions in one slice (`sampling.make_window_table(..., 'common', ...)`, the training
stream's order): a compiled `fori_loop` of steps, each reading its windows' labels from the
table's block structure. The trainer (`trainer.train_classifier`) trains it after the pose models finish; the
weights go to WORKDIR/classifier (orbax), next to the run's checkpoints.

At test time (`ActionLogProbs`, run by `device_eval.apply_all` over the resident test set) a
frame's prediction comes from the window centred on it (edge-padded, as the pose models' inputs),
with flip test-time augmentation averaging the logits of the plain and mirrored windows; a
sequence's prediction is the mean of its windows' log-probabilities (`posejax.evaluation.routing`).

Config fields (`config.classifier`): `enabled` (None: on in action-based mode), `epochs` (over
all actions' data), `channels`, `filter_widths` (empty: the pose model's). Batch size, lr, lr
decay, BN momentum schedule, dropout, augmentation and seed are the run's.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from posejax.common import progress
from posejax.common.errors import PosejaxError
from posejax.config.run_config import RunConfig
from posejax.data.dataset import PoseDataset
from posejax.evaluation import resident as device_eval
from posejax.models.family import Window
from posejax.models.tcn import TemporalModel, causal_shift, receptive_field
from posejax.training import optim, sampling, schedules, slices as slices_lib, step as train_step
from posejax.workdir import layout as workdir_lib
from posejax.workdir import checkpoints

# Model id of the classifier in the initialisation key and the shuffle stream (actions use
# 0..14, the common model 15, padding models 100 on).
CLASSIFIER_ID = 99


class ActionClassifier(nn.Module):
  """TemporalModel whose output is C class logits per frame.

  poses_2d: (B, T, K, F) -> (B, T - RF + 1, C). The inner network ('tcn') predicts
  ceil(C / 3) "joints" of 3 values; their first C values are the logits (the others never
  receive a gradient).
  """
  num_classes: int
  num_joints_in: int
  channels: int
  in_features: int = 2
  filter_widths: Sequence[int] = (3, 3, 3)
  causal: bool = False
  dropout: float = 0.25
  strided: bool = False

  def __post_init__(self):
    object.__setattr__(self, "filter_widths", tuple(self.filter_widths))  # hashable for jit
    super().__post_init__()

  # The window a chunk pass (`device_eval.apply_all`) cuts for it, as a PoseModel's.
  @property
  def receptive_field(self) -> int:
    return receptive_field(self.filter_widths)

  @property
  def causal_shift(self) -> int:
    return causal_shift(self.filter_widths, self.causal)

  @nn.compact
  def __call__(self, poses_2d: jax.Array, *, train: bool, bn_momentum: float | jax.Array = 0.1) -> jax.Array:
    groups = -(-self.num_classes // 3)
    y = TemporalModel(num_joints_in=self.num_joints_in, in_features=self.in_features, num_joints_out=groups,
                      filter_widths=self.filter_widths, causal=self.causal, dropout=self.dropout,
                      channels=self.channels, strided=self.strided, name="tcn")(
                          poses_2d, train=train, bn_momentum=bn_momentum)
    return y.reshape(y.shape[:2] + (3 * groups,))[..., :self.num_classes]


def hparams(run: RunConfig, classes: Sequence[str], num_keypoints: int, in_features: int = 2) -> dict[str, Any]:
  """Everything that defines the classifier and its training (stored with its weights)."""
  t = run.train
  return {"classes": list(classes), "filter_widths": [int(w) for w in run.classifier_filter_widths],
          "channels": int(run.classifier.channels),
          "causal": bool(run.model.causal), "dropout": float(run.model.dropout),
          "num_joints_in": int(num_keypoints), "in_features": int(in_features),
          "epochs": int(run.classifier.epochs), "batch_size": int(t.batch_size),
          "lr": float(t.lr), "lr_decay": float(t.lr_decay), "bn_momentum_start": float(t.bn_momentum_start),
          "bn_momentum_end": float(t.bn_momentum_end), "augment": bool(t.augment), "seed": int(run.seed),
          "shuffle_seed": run.data.shuffle_seed}


def build(hp: Mapping[str, Any], *, strided: bool) -> ActionClassifier:
  """The training (strided) or evaluation (dilated) form."""
  return ActionClassifier(num_classes=len(hp["classes"]), num_joints_in=hp["num_joints_in"],
                          in_features=hp["in_features"], filter_widths=tuple(hp["filter_widths"]),
                          causal=hp["causal"], dropout=hp["dropout"], channels=hp["channels"], strided=strided)


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A trained classifier ready for evaluation."""
  model: ActionClassifier        # dilated form
  variables: Any                 # {'params', 'batch_stats'}, unstacked
  classes: tuple[str, ...]
  metadata: dict[str, Any]


# --- Evaluation head ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ActionLogProbs:
  """Stacked classifiers on chunk windows -> per-frame class log-probabilities (a
  `device_eval.apply_all` head); flip TTA averages the logits of plain and mirrored windows."""
  model: ActionClassifier
  tta: bool
  keypoints_left: tuple[int, ...]
  keypoints_right: tuple[int, ...]

  @property
  def tail(self) -> tuple[int, ...]:
    return (self.model.num_classes,)

  def __call__(self, variables: Any, inputs: jax.Array) -> jax.Array:
    """inputs: (M, B, T, K, F) -> (M, B, T - RF + 1, C)."""
    def one(v, x):
      if not self.tta:
        return jax.nn.log_softmax(self.model.apply(v, x, train=False), axis=-1)
      mirrored = device_eval.flip_array(x, self.keypoints_left, self.keypoints_right)
      logits = self.model.apply(v, jnp.concatenate([x, mirrored]), train=False)
      return jax.nn.log_softmax((logits[:x.shape[0]] + logits[x.shape[0]:]) / 2, axis=-1)

    return jax.vmap(one)(variables, inputs)


def frame_log_probs(classifier: Classifier, resident: device_eval.ResidentTestSet, *, tta: bool) -> jax.Array:
  """(N, C) device log-probabilities of every flat frame of a resident set."""
  head = ActionLogProbs(classifier.model, bool(tta), tuple(resident.flip[0]), tuple(resident.flip[1]))
  stacked = jax.tree.map(lambda x: jnp.asarray(x)[None], classifier.variables)
  return device_eval.apply_all(head, stacked, resident, desc="action classifier")[0]


# --- Training ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainingData:
  """The all-action window table and the class of each of its example blocks."""
  table: sampling.WindowTable
  block_label: np.ndarray  # (num_blocks,) int32
  classes: tuple[str, ...]


def training_data(dataset: PoseDataset, actions: Sequence[str], augment: bool) -> TrainingData:
  """All selected actions in one slice; a block's label is its sequence's action index."""
  table = sampling.make_window_table(dataset, actions, "common", augment)
  records = slices_lib.slice_records(dataset, actions, "common")[0]
  labels = np.asarray([list(actions).index(r.action) for r in records], np.int32)
  # example_blocks: per record, its unflipped block then (with augmentation) its flipped one.
  return TrainingData(table, np.repeat(labels, 2 if augment else 1), tuple(actions))


def window_labels(tables: Mapping[str, jax.Array], block_label: jax.Array, frame: jax.Array) -> jax.Array:
  """The class of the windows centred on frame-table rows `frame` (any shape).

  Blocks are in frame order; the last block starting at or before a row is its sequence's.
  """
  block = jnp.searchsorted(tables["block_frame"], frame, side="right", method="compare_all") - 1
  return block_label[block]


def classifier_step(state: train_step.TrainState, windows: jax.Array, labels: jax.Array,
                    hp: Mapping[str, jax.Array], rng: jax.Array, *, model: ActionClassifier,
                    optimizer: optax.GradientTransformation) -> tuple[train_step.TrainState, dict[str, jax.Array]]:
  """One cross-entropy step: windows (B, RF, K, F), labels (B,) -> (state, {'loss', 'correct'})."""
  def loss_fn(params):
    logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, windows, train=True,
                                  bn_momentum=hp["bn_momentum"], mutable=["batch_stats"],
                                  rngs={"dropout": jax.random.fold_in(rng, state.step)})
    logits = logits[:, 0]  # the strided form: one output frame per window
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, (updates["batch_stats"], logits)

  loss, (batch_stats, logits), params, opt_state = optim.gradient_update(
      loss_fn, state.params, state.opt_state, hp["learning_rate"], optimizer)
  state = train_step.TrainState(params=params, batch_stats=batch_stats, opt_state=opt_state, step=state.step + 1)
  return state, {"loss": loss, "correct": jnp.sum(jnp.argmax(logits, -1) == labels)}


def _steps_fn(model: ActionClassifier, optimizer, spec: sampling.WindowSpec, hp_fn: Callable) -> Callable:
  """Jitted `(state, acc, tables, block_label, start, count, rng) -> (state, acc, start + count)`:
  steps start..start+count-1 of the stream; acc accumulates (loss sum, correct windows); the
  scalar (not donated) tells when the call has completed."""
  def run(state, acc, tables, block_label, start, count, rng):
    slot = jnp.zeros((1,), jnp.int32)

    def body(i, carry):
      state, acc = carry
      position = start + i
      where = sampling.example_indices(tables, spec, slot, position[None])
      windows = sampling.gather_windows(tables, spec, where)["poses_2d"][0]
      labels = window_labels(tables, block_label, where["frame"][0])
      epoch = position * spec.batch_size // tables["examples"][0]
      hp = jax.tree.map(lambda x: x[0], hp_fn(epoch[None], slot))
      state, metrics = classifier_step(state, windows, labels, hp, rng, model=model, optimizer=optimizer)
      return state, acc + jnp.stack([metrics["loss"], metrics["correct"].astype(jnp.float32)])

    state, acc = jax.lax.fori_loop(0, count, body, (state, acc))
    return state, acc, start + count

  return jax.jit(run, donate_argnums=(0, 1))


def train(hp: Mapping[str, Any], data: TrainingData, *, steps_per_call: int,
          log: Callable[[str], None] = print,
          stop_requested: Callable[[], bool] = lambda: False) -> tuple[Any, dict[str, Any]] | None:
  """Trains the classifier; returns (variables, training summary), or None when
  `stop_requested()` (SIGTERM/SIGINT) turned true between compiled calls."""
  model, table = build(hp, strided=True), data.table
  rf = receptive_field(hp["filter_widths"])
  batch, epochs = int(hp["batch_size"]), int(hp["epochs"])
  if epochs < 1:
    raise PosejaxError(f"--config.classifier.epochs={epochs}: expected an integer >= 1")
  budget = schedules.make_budget("fixed", "common", epochs, 1, table.examples, batch)
  if budget.total_steps * batch >= 2**31:
    raise PosejaxError(f"config.classifier: {budget.total_steps:,} steps of batch {batch} exceed the 2**31 "
                       "examples a stream can index")
  hp_fn = schedules.hyperparams_fn(budget, hp["lr"], hp["lr_decay"], hp["bn_momentum_start"], hp["bn_momentum_end"])
  seed = int(hp["seed"])
  spec = sampling.window_spec(table, batch_size=batch,
                              window=Window(rf, causal_shift(hp["filter_widths"], hp["causal"])),
                              seed=seed if hp["shuffle_seed"] is None else int(hp["shuffle_seed"]),
                              stream_ids=[CLASSIFIER_ID])
  optimizer = optim.adam_amsgrad(hp["lr"])
  state = train_step.init_state(model, optimizer, train_step.model_key(seed, CLASSIFIER_ID),
                                (1, rf, hp["num_joints_in"], table.frames_2d.shape[-1]))
  tables = jax.device_put(table.arrays())
  block_label, rng = jax.device_put(data.block_label), jax.random.key(seed + CLASSIFIER_ID)
  acc = jnp.zeros(2, jnp.float32)
  start = time.perf_counter()
  compiled = _steps_fn(model, optimizer, spec, hp_fn).lower(
      state, acc, tables, block_label, np.int32(0), np.int32(0), rng).compile()
  compile_s, start = time.perf_counter() - start, time.perf_counter()
  n, done, history = int(table.examples[0]), 0, []
  for epoch in range(epochs):
    end = -(-(epoch + 1) * n // batch)  # the step at which the stream has passed (epoch + 1) n examples
    steps = end - done
    with progress.Bar(np.full(steps, batch), f"classifier epoch {epoch + 1}") as bar:
      completions = progress.Completions(bar.update)
      while done < end:
        if stop_requested():
          completions.drain()
          return None
        count = min(steps_per_call, end - done)
        state, acc, marker = compiled(state, acc, tables, block_label, np.int32(done), np.int32(count), rng)
        done += count
        completions.dispatched(marker, count)
      completions.drain()
    loss, correct = (float(x) for x in np.asarray(acc))
    acc = jnp.zeros(2, jnp.float32)
    history.append({"epoch": epoch + 1, "loss": loss / max(steps, 1), "train_accuracy": correct / max(steps * batch, 1)})
    log(f"classifier [{epoch + 1}/{epochs}] loss {history[-1]['loss']:.4f} "
        f"train accuracy {100 * history[-1]['train_accuracy']:.1f}%")
  jax.block_until_ready(state)
  summary = {"steps": int(done), "train_time_s": time.perf_counter() - start, "compile_time_s": compile_s,
             "examples_per_epoch": n, "history": history}
  log(f"classifier: {done:,} steps in {summary['train_time_s']:.1f} s (compilation {compile_s:.1f} s)")
  return jax.tree.map(np.asarray, state.variables), summary


# --- Checkpoint: WORKDIR/classifier --------------------------------------------------------------


def save(workdir: str, variables: Any, metadata: Mapping[str, Any]) -> str:
  """Writes the classifier's variables and metadata (`checkpoints.save_model`); returns the directory."""
  return checkpoints.save_model(workdir_lib.classifier_dir(workdir), int(metadata.get("steps", 0)), variables,
                                metadata)


def restore(workdir: str, *, repair: bool = False) -> Classifier | None:
  """The workdir's classifier, None when it has none (or, with `repair`, only a damaged one,
  moved aside: the trainer then trains it again)."""
  directory = workdir_lib.classifier_dir(workdir)
  restored = checkpoints.restore_model(directory, repair=repair)
  if restored is None:
    return None
  variables, metadata = restored
  hp = metadata.get("hparams")
  if not isinstance(hp, dict) or "classes" not in hp:
    raise PosejaxError(f"{directory}: the classifier checkpoint has no hyper-parameters (not written by posejax?)")
  return Classifier(build(hp, strided=False), variables, tuple(hp["classes"]), metadata)


def check_same(saved: Mapping[str, Any], hp: Mapping[str, Any], fingerprint: str, where: str) -> None:
  diffs = [f"{k}={saved['hparams'].get(k)!r} (config: {v!r})" for k, v in hp.items()
           if saved["hparams"].get(k) != v]
  if saved.get("dataset_fingerprint") != fingerprint:
    diffs.append(f"dataset fingerprint {saved.get('dataset_fingerprint')} (data now: {fingerprint})")
  if diffs:
    raise PosejaxError(f"{where}: the classifier there was trained differently: " + "; ".join(diffs)
                       + " (use the original config, or remove that folder to train it again)")

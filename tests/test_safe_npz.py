"""Tests for posejax.common.safe_npz: dataset files load as before, pickles that run code are refused."""

import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from posejax.common import safe_npz
from posejax.common.errors import PosejaxError
from posejax.common.io_utils import load_npz_dict
from posejax.data import h36m, prepare_humaneva, synthetic
from posejax.tools import infer

RNG = np.random.default_rng(0)
H36M_META = {"layout_name": "h36m", "num_joints": 17,
             "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}


class Hostile:
  """Pickles as a call of `fn(*args)`, which runs when the pickle loads."""

  def __init__(self, fn, *args):
    self.fn, self.args = fn, args

  def __reduce__(self):
    return self.fn, self.args


def load(path, encoding="ASCII"):
  """Every member of `path` through the restricted loader."""
  with np.load(path) as archive:
    return {k: safe_npz.load_member(archive, k, str(path), encoding) for k in archive.files}


def load_trusting(path, encoding="ASCII"):
  with np.load(path, allow_pickle=True, encoding=encoding) as archive:
    return {k: archive[k] for k in archive.files}


def assert_same(path, encoding="ASCII"):
  """The restricted load equals numpy's unrestricted one: same types, keys, dtypes and bytes."""
  got, want = load(path, encoding), load_trusting(path, encoding)
  assert pickle.dumps(got, protocol=4) == pickle.dumps(want, protocol=4)


class Py2Pickler(pickle._Pickler):
  """Writes str and bytes with Python 2's `str` opcodes and numpy 1's module names, as Python 2 numpy did."""
  dispatch = dict(pickle._Pickler.dispatch)

  def save_py2_str(self, obj):
    data = obj if isinstance(obj, bytes) else obj.encode("latin1")
    if len(data) < 256:
      self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
    else:
      self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
    self.memoize(obj)

  dispatch[bytes] = save_py2_str
  dispatch[str] = save_py2_str


def py2_pickle(obj):
  buffer = io.BytesIO()
  Py2Pickler(buffer, protocol=2).dump(obj)
  return buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_pickled_npz(path, **pickled):
  """An npz whose members are 0-d object arrays holding the given pickle streams."""
  with zipfile.ZipFile(path, "w") as archive:
    for key, stream in pickled.items():
      header = io.BytesIO()
      np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": ()})
      archive.writestr(key + ".npy", header.getvalue() + stream)
  return path


def objects(*items):
  """A 1-d object array holding exactly `items` (np.array would unpack arrays among them)."""
  array = np.empty(len(items), dtype=object)
  for i, item in enumerate(items):
    array[i] = item
  return array


def h36m_2d():
  return {"S1": {"Walking 1": [RNG.random((5, 17, 2)).astype(np.float32) for _ in range(4)]}}


# ------------------------------------------------------------------ hostile files


@pytest.mark.parametrize("make", [lambda target: Hostile(os.mkdir, target),
                                  lambda target: Hostile(open, target, "w")])
def test_a_pickle_that_runs_code_is_refused_before_it_runs(tmp_path, make):
  target = str(tmp_path / "pwned")
  hostile = make(target)
  path = str(tmp_path / "data_2d_h36m_x.npz")
  np.savez_compressed(path, positions_2d={"S1": {"Walking": [hostile]}}, metadata=H36M_META)
  with pytest.raises(PosejaxError) as info:
    load_npz_dict(path, ("positions_2d", "metadata"))
  name = f"{hostile.fn.__module__}.{hostile.fn.__qualname__}"
  assert str(info.value) == (f"{path}: member 'positions_2d' holds a pickled {name!r}, which posejax does not "
                             "load (only dicts, lists, tuples, strings, numbers and numeric arrays)")
  assert not os.path.exists(target)


def test_the_h36m_loader_refuses_a_hostile_2d_file(tmp_path):
  synthetic.generate(str(tmp_path), frames=16, seed=1, subjects=("S1",))
  target = tmp_path / "pwned"
  path = tmp_path / "data_2d_h36m_evil.npz"
  np.savez_compressed(path, positions_2d={"S1": {}}, metadata={**H36M_META, "x": Hostile(os.mkdir, str(target))})
  with pytest.raises(PosejaxError, match=r"member 'metadata' holds a pickled 'posix\.mkdir'") as info:
    h36m.load_h36m(str(tmp_path), keypoints="evil")
  assert str(path) in str(info.value) and "\n" not in str(info.value)
  assert not target.exists()


def test_the_custom_keypoints_loader_and_cli_refuse_a_hostile_file(tmp_path, capsys):
  from absl import flags
  target = tmp_path / "pwned"
  path = str(tmp_path / "data_2d_custom_evil.npz")
  np.savez_compressed(path, positions_2d={"v.mp4": {"custom": [Hostile(os.mkdir, str(target))]}},
                      metadata={"layout_name": "coco", "num_joints": 17})
  with pytest.raises(PosejaxError, match=r"member 'positions_2d' holds a pickled 'posix\.mkdir'"):
    infer.read_custom_keypoints(path)
  values = infer._define_flags(flags.FlagValues())
  with pytest.raises(SystemExit) as info:
    infer.main(values(["infer", "--workdir", str(tmp_path / "run"), "--keypoints", path]), values)
  err = capsys.readouterr().err
  assert info.value.code == 2 and err.startswith(f"error: {path}: member 'positions_2d'") and err.count("\n") == 1
  assert not target.exists()


def test_detection_archives_are_restricted_too(tmp_path):
  target = tmp_path / "pwned"
  path = str(tmp_path / "detectron.npz")
  write_pickled_npz(path, boxes=py2_pickle(np.array([Hostile(os.mkdir, str(target))], dtype=object)),
                    keypoints=py2_pickle(np.array([], dtype=object)))
  with pytest.raises(PosejaxError, match=r"member 'boxes' holds a pickled 'posix\.mkdir'"):
    prepare_humaneva.import_detectron(path)
  assert not target.exists()


@pytest.mark.parametrize("value, refused", [
    (objects(np.array(["a", "b"])), "an array of dtype '<U1'"),
    ({"s": np.str_("x")}, "a scalar of dtype '<U1'"),
    (objects(np.zeros(2, [("a", "f4"), ("b", "i4")])), "an array of dtype"),
    (objects(np.array(["2020-01-01"], "datetime64[D]")), "an array of dtype '<M8[D]'"),
    ({"k": [objects(np.ones(2), objects(np.array(["deep"])))]}, "an array of dtype '<U4'"),
    (objects({1, 2}), "a builtins.set"),
])
def test_object_arrays_holding_anything_but_plain_data_are_refused(tmp_path, value, refused):
  path = str(tmp_path / "x.npz")
  for protocol in (3, 4):  # sets are built with opcodes in protocol 4, with a global before
    write_pickled_npz(path, positions_2d=pickle.dumps(np.array(value, dtype=object), protocol=protocol))
    with pytest.raises(PosejaxError, match=f"{path}: member 'positions_2d' holds ") as info:
      load_npz_dict(path, ("positions_2d",))
    assert refused in str(info.value) or "holds a pickled 'builtins.set'" in str(info.value)


def test_array_subclasses_and_other_globals_are_refused(tmp_path):
  path = str(tmp_path / "x.npz")
  np.savez(path, a=objects(np.ma.masked_array([1.0, 2.0], [False, True])))
  with pytest.raises(PosejaxError, match=r"member 'a' holds a pickled 'numpy\.ma\.core\._mareconstruct'"):
    load(path)
  write_pickled_npz(path, a=b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.")
  with pytest.raises(PosejaxError, match="member 'a' is not a readable pickle"):
    load(path)


def test_a_truncated_pickle_is_one_line(tmp_path):
  path = str(tmp_path / "x.npz")
  write_pickled_npz(path, a=pickle.dumps(np.array({"k": np.ones(3)}, dtype=object), protocol=3)[:-20])
  with pytest.raises(PosejaxError, match=f"{path}: member 'a' is not a readable pickle"):
    load(path)


# ------------------------------------------------------------------ legitimate files


def test_the_reference_formats_load_exactly_as_numpy_loads_them(tmp_path):
  positions_3d = {"S1": {"Walking 1": RNG.random((5, 32, 3)).astype(np.float32)},
                  "S11": {"Sitting": RNG.random((3, 32, 3)).astype(np.float32)}}
  np.savez_compressed(tmp_path / "3d.npz", positions_3d=positions_3d)
  np.savez_compressed(tmp_path / "2d.npz", positions_2d=h36m_2d(), metadata=H36M_META)
  custom_meta = {"layout_name": "coco", "num_joints": 17, "keypoints_symmetry": [[1, 3, 5], [2, 4, 6]],
                 "video_metadata": {"v.mp4": {"w": 1920, "h": 1080}}}
  positions_2d = {"v.mp4": {"custom": [RNG.random((7, 17, 2)).astype(np.float32)]}}
  np.savez_compressed(tmp_path / "custom.npz", positions_2d=positions_2d, metadata=custom_meta)
  np.savez_compressed(tmp_path / "cpn.npz", keypoints=RNG.random((4, 17, 3)))
  for name in ("3d", "2d", "custom", "cpn"):
    assert_same(tmp_path / f"{name}.npz")
  assert load_npz_dict(str(tmp_path / "custom.npz"), ("metadata",))["metadata"] == custom_meta


def test_the_synthetic_files_load_exactly_as_numpy_loads_them(tmp_path):
  synthetic.generate(str(tmp_path), frames=16, seed=2, subjects=("S1", "S9"))
  paths = sorted(tmp_path.glob("*.npz"))
  assert len(paths) == 4
  for path in paths:
    assert_same(path)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4])
def test_every_pickle_protocol_of_plain_data_loads(tmp_path, protocol):
  value = {"S1": {"W": [np.zeros((0, 17, 2), np.float32), RNG.random((2, 3))]},
           "m": {"f": np.float32(1.5), "b": np.bool_(False), "i": np.int64(-3), "c": 3j, "big": 2**70,
                 "s": "\u00e9", "raw": b"", "raw2": b"ab", "none": None, "t": (1, True)}}
  cycle = []
  cycle.append(cycle)
  value["cycle"] = cycle
  path = write_pickled_npz(tmp_path / "x.npz", a=pickle.dumps(np.array(value, dtype=object), protocol=protocol))
  assert_same(path)


def test_python2_numpy1_pickles_load_with_latin1(tmp_path):
  boxes = np.array([[[], np.array([[0, 0, 9, 9, 0.9], [1, 1, 5, 5, 0.5]], np.float32)]], dtype=object)
  keypoints = np.array([[[], [RNG.random((6, 17)).astype(np.float32), RNG.random((6, 17)).astype(np.float32)]]],
                       dtype=object)
  detectron = write_pickled_npz(tmp_path / "detectron.npz", boxes=py2_pickle(boxes), keypoints=py2_pickle(keypoints))
  metadata = {**H36M_META, "scale": np.float64(2.5)}
  h36m_file = write_pickled_npz(tmp_path / "2d.npz", positions_2d=py2_pickle(np.array(h36m_2d(), dtype=object)),
                                metadata=py2_pickle(np.array(metadata, dtype=object)))
  for path in (detectron, h36m_file):
    assert_same(path, encoding="latin1")
  np.testing.assert_array_equal(prepare_humaneva.import_detectron(str(detectron))[0], keypoints[0, 1][0].T[:, 4:6])
  assert load(h36m_file, "latin1")["metadata"].item() == metadata


def test_the_admitted_globals_cannot_be_modified_by_a_pickle():
  for value in safe_npz.ALLOWED_GLOBALS.values():
    with pytest.raises((TypeError, AttributeError)):
      setattr(value, "__defaults__", ())  # what a BUILD opcode would do
  with pytest.raises(pickle.UnpicklingError):
    safe_npz.ALLOWED_GLOBALS[("_codecs", "encode")]("eJw=", "base64")

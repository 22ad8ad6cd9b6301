"""Reading npz members without letting a shared data file run code.

The dataset formats store dicts and lists as pickled object arrays, and a pickle
can call any importable function while it loads. Object members are therefore
unpickled by an unpickler that can only rebuild plain containers, strings,
numbers and numeric arrays, and the result is checked again after loading;
every other member is read by numpy without pickle.
"""

from __future__ import annotations

import pickle
import zipfile
from typing import Any, Iterator

import numpy as np
import numpy.lib.format as npy_format

from posejax.common.errors import PosejaxError

WHAT_LOADS = "only dicts, lists, tuples, strings, numbers and numeric arrays"
NUMERIC_KINDS = frozenset("biufc")  # bool, signed, unsigned, float, complex
PLAIN_TYPES = (dict, list, tuple, str, bytes, int, float, bool, complex, type(None))
LATIN1_NAMES = frozenset({"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"})


class _Latin1Bytes:
  """What `_codecs.encode` does in a Python 3 pickle of bytes (protocol < 3), and nothing else.

  An instance without attributes: a pickle's BUILD opcode cannot alter it, as it
  could a function's defaults.
  """
  __slots__ = ()

  def __call__(self, text: str, encoding: str = "latin1") -> bytes:
    if not isinstance(text, str) or not isinstance(encoding, str) or encoding.lower() not in LATIN1_NAMES:
      raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not a bytes literal")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
  """(module, name) -> object for every global a pickled numeric array, dtype or scalar names.

  numpy 2 pickles name `numpy._core.multiarray`, numpy 1 `numpy.core.multiarray`;
  Python 2 and protocol < 3 pickles name `__builtin__` for builtins and
  `_codecs.encode` for non-empty bytes. Every spelling resolves to an object
  held here, so loading imports nothing; none of them can be modified by a pickle.
  """
  reconstruct = np.array(0).__reduce__()[0]
  scalar = np.float64(0).__reduce__()[0]
  allowed: dict[tuple[str, str], Any] = {
      ("numpy", "ndarray"): np.ndarray,
      ("numpy", "dtype"): np.dtype,
      ("_codecs", "encode"): _Latin1Bytes(),
  }
  for module in ("builtins", "__builtin__"):
    allowed[(module, "complex")] = complex
    allowed[(module, "bytes")] = bytes  # b'' in protocol < 3, e.g. the data of an empty array
  for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    allowed[(module, "_reconstruct")] = reconstruct
    allowed[(module, "scalar")] = scalar
  return allowed


ALLOWED_GLOBALS = _allowed_globals()


class Refused(pickle.UnpicklingError):
  """A pickle names a global outside ALLOWED_GLOBALS; `.name` is its dotted name."""

  def __init__(self, name: str):
    super().__init__(name)
    self.name = name


class RestrictedUnpickler(pickle.Unpickler):
  """An unpickler whose globals are limited to ALLOWED_GLOBALS."""

  def find_class(self, module: str, name: str) -> Any:
    try:
      return ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise Refused(f"{module}.{name}") from None

  def persistent_load(self, pid: Any) -> Any:
    raise Refused("persistent id")


def _children(value: Any) -> Iterator[Any]:
  if isinstance(value, dict):
    for k, v in value.items():
      yield k
      yield v
  elif isinstance(value, (list, tuple)):
    yield from value
  elif isinstance(value, np.ndarray) and value.dtype == object:
    yield from value.flat


def _refusal(value: Any) -> str | None:
  """Why `value` itself (not its children) is not plain data; None when it is."""
  if type(value) is np.ndarray or isinstance(value, np.generic):
    if value.dtype.kind in NUMERIC_KINDS or value.dtype.kind == "O":
      return None
    return f"{'an array' if isinstance(value, np.ndarray) else 'a scalar'} of dtype {value.dtype.str!r}"
  if type(value) in PLAIN_TYPES:
    return None
  return f"a {type(value).__module__}.{type(value).__qualname__}"


def first_refusal(value: Any) -> str | None:
  """A description of the first thing in `value` that is not plain data, or None.

  Walks containers and object arrays iteratively, once per object, so that
  cyclic or deeply nested pickles cannot exhaust the stack.
  """
  stack, seen = [value], set()
  while stack:
    item = stack.pop()
    if id(item) in seen:
      continue
    seen.add(id(item))
    reason = _refusal(item)
    if reason is not None:
      return reason
    stack.extend(_children(item))
  return None


def _member_name(archive: np.lib.npyio.NpzFile, key: str) -> str:
  """The zip entry of `key`, resolved as `NpzFile.__getitem__` does."""
  names = archive.zip.namelist()
  return key if key in names else key + ".npy"


def _skip_header(fp: Any) -> np.dtype:
  """Reads the npy magic and header from `fp`; the dtype it declares."""
  major, _ = npy_format.read_magic(fp)
  read_header = npy_format.read_array_header_1_0 if major == 1 else npy_format.read_array_header_2_0
  return read_header(fp)[2]


def _holds_objects(archive: np.lib.npyio.NpzFile, name: str) -> bool:
  """Whether entry `name` is an npy array whose dtype holds Python objects."""
  with archive.zip.open(name) as fp:
    if fp.read(len(npy_format.MAGIC_PREFIX)) != npy_format.MAGIC_PREFIX:
      return False  # numpy returns such entries as raw bytes
  with archive.zip.open(name) as fp:
    return _skip_header(fp).hasobject


def _unpickle_member(archive: np.lib.npyio.NpzFile, name: str, encoding: str) -> Any:
  """The object pickled after the npy header of entry `name`, unpickled with restrictions."""
  with archive.zip.open(name) as fp:
    _skip_header(fp)
    return RestrictedUnpickler(fp, encoding=encoding).load()


def load_member(archive: np.lib.npyio.NpzFile, key: str, path: str, encoding: str = "ASCII") -> Any:
  """`archive[key]`, except that object members are unpickled with restrictions.

  `encoding` decodes Python 2 strings, as numpy.load's option does.

  Raises:
    PosejaxError: the member pickles anything but plain data, or cannot be read
      (names `path`, the member and what was refused).
  """
  name = _member_name(archive, key)
  try:
    if not _holds_objects(archive, name):
      return archive[key]
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise PosejaxError(f"{path}: member {key!r} is not a readable array ({e})") from None
  try:
    value = _unpickle_member(archive, name, encoding)
  except Refused as e:
    raise PosejaxError(f"{path}: member {key!r} holds a pickled {e.name!r}, which posejax does not load "
                       f"({WHAT_LOADS})") from None
  except Exception as e:  # a malformed pickle can raise almost any exception type
    raise PosejaxError(f"{path}: member {key!r} is not a readable pickle ({type(e).__name__}: {e})") from None
  reason = first_refusal(value)
  if reason is not None:
    raise PosejaxError(f"{path}: member {key!r} holds {reason}, which posejax does not load ({WHAT_LOADS})")
  return value

"""Pickled NumPy motions (``.npy`` object arrays, raw pickles) read without running their code.

A pickle may name any Python callable, which loading calls (``np.load(..., allow_pickle=True)`` would
run a hostile file's ``os.system``). :class:`RestrictedUnpickler` rebuilds only NumPy arrays, dtypes,
scalars and plain containers; any other global is refused with a :class:`DataFormatError` naming it,
before anything is called.

Readers: :func:`read_mdm` (Human Motion Diffusion Model ``results.npy``) and :func:`read_skeleton_motion`
(poselib ``SkeletonMotion`` dicts of the AMP/IsaacGymEnvs motion library).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from kinesis_neuro.errors import DataFormatError
from kinesis_neuro.io.common import readable_file

# (module, name) the unpickler may look up: NumPy's array reconstruction (numpy.core in NumPy 1.x files,
# numpy._core in NumPy 2) and ordered dicts; nothing that touches files, processes or imports
ALLOWED_GLOBALS = frozenset({
    *((module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
      for name in ("_reconstruct", "scalar")),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
})
MDM_FPS = 20.0  # HumanML3D frame rate
HUMANML3D_JOINTS = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
                    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
                    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; ``source`` names the file in errors."""

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise DataFormatError(f"{self.source}: the pickle calls {module}.{name}, which is not allowed (only NumPy "
                                  "arrays and plain containers are rebuilt); refusing to load it")
        return super().find_class(module, name)


def load_pickle(path: str | Path):
    """The object in a pickled ``.npy`` file (``np.save`` of an object array: a NumPy header, then a pickle)
    or a raw pickle, rebuilt by :class:`RestrictedUnpickler`; a 0-d object array gives its item."""
    path = readable_file(path)
    data = path.read_bytes()
    stream = io.BytesIO(data)
    if data.startswith(b"\x93NUMPY"):
        try:
            version = np.lib.format.read_magic(stream)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(stream) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(stream))
        except ValueError as err:
            raise DataFormatError(f"{path}: corrupt .npy header ({err})") from err
        if dtype != object:
            raise DataFormatError(f"{path}: a plain {dtype} array {shape}, not a pickled object; read it with np.load")
    try:
        obj = RestrictedUnpickler(stream, str(path)).load()
    except DataFormatError:
        raise
    except Exception as err:  # pickle raises UnpicklingError, EOFError, ValueError, TypeError... on bad bytes
        raise DataFormatError(f"{path}: not a readable pickle ({type(err).__name__}: {err}); "
                              "truncated or corrupt") from err
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    return obj


def _array(path: Path, value, what: str, ndim: int) -> np.ndarray:
    array = value.get("arr") if isinstance(value, dict) else value  # poselib TensorWrapper: {"arr", "context"}
    if not isinstance(array, np.ndarray) or array.ndim != ndim or not np.issubdtype(array.dtype, np.number):
        shape = getattr(array, "shape", type(array).__name__)
        raise DataFormatError(f"{path}: {what} is {shape}; expected a {ndim}-d numeric array")
    if not np.all(np.isfinite(array)):
        raise DataFormatError(f"{path}: {what} holds {int((~np.isfinite(array)).sum())} NaN/infinite values")
    return array


def _dict(path: Path, obj, keys: tuple[str, ...], what: str) -> dict:
    if not isinstance(obj, dict) or any(k not in obj for k in keys):
        have = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DataFormatError(f"{path}: expected {what} with {list(keys)}, found {have}")
    return obj


def read_mdm(path: str | Path) -> dict:
    """An MDM ``results.npy``: ``positions`` (sample, frame, joint, xyz; m, y up) of the HumanML3D 22-joint
    SMPL skeleton (``joints``), ``lengths`` (valid frames per sample), ``text`` (prompt per sample), ``fps``
    (20) and ``frame`` ("y up"). Frames past a sample's length are padding."""
    path = Path(path)
    obj = _dict(path, load_pickle(path), ("motion", "text", "lengths"), "an MDM result dict")
    motion = _array(path, obj["motion"], "motion", 4)
    lengths = _array(path, obj["lengths"], "lengths", 1).astype(int)
    if motion.shape[1:3] != (len(HUMANML3D_JOINTS), 3) or len(lengths) != motion.shape[0]:
        raise DataFormatError(f"{path}: motion {motion.shape}, lengths {lengths.shape}; expected (samples, 22 joints, "
                              "xyz, frames) and one length per sample")
    if np.any((lengths < 1) | (lengths > motion.shape[3])):
        raise DataFormatError(f"{path}: lengths {lengths.tolist()} outside 1-{motion.shape[3]} frames")
    text = [str(t) for t in obj["text"]]
    return {"positions": motion.transpose(0, 3, 1, 2).astype(float), "lengths": lengths, "text": text,
            "joints": list(HUMANML3D_JOINTS), "fps": MDM_FPS, "units": "m", "frame": "y up", "source": str(path)}


def read_skeleton_motion(path: str | Path) -> dict:
    """A poselib ``SkeletonMotion`` (AMP motion library): ``rotation`` (frame, body, 4) local unit quaternions
    (x, y, z, w) of each body relative to its parent, ``root_translation`` (frame, 3; m, z up),
    ``global_velocity`` (m/s) and ``global_angular_velocity`` (rad/s) (frame, body, 3), ``bodies``
    (names), ``parents`` (index, -1 for the root), ``offsets`` (body, 3; m, in the parent's frame), ``fps``."""
    path = Path(path)
    obj = _dict(path, load_pickle(path), ("rotation", "root_translation", "skeleton_tree", "fps"),
                "a SkeletonMotion dict")
    tree = _dict(path, obj["skeleton_tree"], ("node_names", "parent_indices", "local_translation"), "skeleton_tree")
    rotation = _array(path, obj["rotation"], "rotation", 3)
    bodies = [str(n) for n in tree["node_names"]]
    parents = _array(path, tree["parent_indices"], "parent_indices", 1).astype(int)
    offsets = _array(path, tree["local_translation"], "local_translation", 2)
    root = _array(path, obj["root_translation"], "root_translation", 2)
    n_frames, n_bodies = rotation.shape[:2]
    if (rotation.shape[2] != 4 or n_bodies != len(bodies) or parents.shape != (n_bodies,)
            or offsets.shape != (n_bodies, 3) or root.shape != (n_frames, 3)):
        raise DataFormatError(f"{path}: rotation {rotation.shape}, {len(bodies)} bodies, parents {parents.shape}, "
                              f"offsets {offsets.shape}, root_translation {root.shape} do not fit together")
    norm = np.linalg.norm(rotation, axis=2)
    if np.max(np.abs(norm - 1.0)) > 1e-3:
        raise DataFormatError(f"{path}: rotations are not unit quaternions (norms {norm.min():g}-{norm.max():g})")
    fps = float(np.asarray(obj["fps"]).ravel()[0])
    if not fps > 0:
        raise DataFormatError(f"{path}: fps is {fps:g}; expected a positive frame rate")
    out = {"rotation": rotation.astype(float), "root_translation": root.astype(float), "bodies": bodies,
           "parents": parents, "offsets": offsets.astype(float), "fps": fps,
           "is_local": bool(obj.get("is_local", True)), "quaternion_order": "xyzw", "frame": "z up", "source": str(path)}
    for key in ("global_velocity", "global_angular_velocity"):
        if key in obj:
            out[key] = _array(path, obj[key], key, 3).astype(float)
    return out

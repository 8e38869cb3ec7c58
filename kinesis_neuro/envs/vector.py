"""N MyoLegs imitation environments stepped together in one process (a Gymnasium ``VectorEnv``).

:class:`MyoLegsVectorEnv` holds one ``MjModel`` and reference table and ``num_envs`` ``MjData``. A step
runs the physics of every environment, then computes observations, rewards and terminations for all of
them at once with numpy (one matrix product per quantity for the whole batch instead of one per
environment), so a trainer also evaluates its policy once per batch. Each environment produces exactly
the trajectory of a :class:`~kinesis_neuro.envs.imitation.MyoLegsImitationEnv` with the same seed and
actions, bit for bit on one machine (the same floating-point operations on the same values; see
``tests/test_vector_env.py``).

Target-length control runs at every physics substep. Two backends do it, with identical results:

* ``"c"``: a small C kernel (the substep loop of every environment: ``mj_step1``, the muscles' forces at
  activation 0 and 1, the activation, ``mj_step2``; then the state the observation needs, copied into batch
  arrays), compiled at first use with the system C compiler (``cc``, or ``$CC``; no headers or libraries
  needed: it calls the MuJoCo library the ``mujoco`` package loaded through function pointers) and cached
  in ``$KINESIS_NEURO_CACHE`` (default ``~/.cache/kinesis_neuro``). Compiled without fast-math or FMA
  contraction, it does the same IEEE operations as the numpy code. The forces at activation 0 and 1 come
  from MuJoCo's ``mju_muscleBias`` and ``mju_muscleGain`` (what ``mj_fwdActuation`` computes them with)
  where every actuator is a plain MuJoCo muscle and both ways agree bit for bit on test states at start-up,
  else from two ``mj_fwdActuation`` calls, as the single environment does.
* ``"numpy"``: the same arithmetic over the batch as numpy arrays (``N x 80``), one MuJoCo call per
  environment per stage. The fallback where no compiler is found; ``backend="auto"`` (default) takes
  ``"c"`` when it builds. ``$KINESIS_NEURO_VECTOR_BACKEND`` overrides ``"auto"``.

``mujoco.rollout`` is not used: it steps open-loop control sequences, and this control is closed-loop at
every substep.

Autoreset (``autoreset=True``, Gymnasium's ``AutoresetMode.SAME_STEP``): when an environment's episode
ends, :meth:`~MyoLegsVectorEnv.step` resets it at once (its own RNG goes on, as ``env.reset()`` without a
seed does) and returns the new episode's first observation; the observation that ended the episode is in
``infos["final_obs"]``, its info (``tracking_error``, ``reference_time``, ``clip``, ``reward_*``) in
``infos["final_info"]`` and ``infos["episode"]`` holds the episode's return ``r`` and length ``l`` (each with
Gymnasium's ``_key`` masks). ``infos`` is empty on steps where no episode ends. With ``autoreset=False``
(``AutoresetMode.DISABLED``) ended environments wait for ``reset(options={"reset_mask": mask})``;
:meth:`~MyoLegsVectorEnv.step_envs` steps a subset (evaluation with episodes of different lengths).

Every :class:`~kinesis_neuro.envs.imitation.ImitationConfig` setting is supported, the KINESIS-aligned ones
and motion libraries (``clips``) included: the rewards come from the single environment's
:func:`~kinesis_neuro.envs.imitation.step_rewards`, each environment draws its clip and start with
:meth:`MyoLegsImitationEnv.draw_episode` and its own RNG, and ``final_info["clip"]`` says which clip an
episode imitated (failures per clip). With ``activation_dynamics`` the kernel sends its command to ``ctrl``
only and restores ``act`` after probing the muscles at activation 0 and 1; it records every substep's
command for the substep-averaged effort.

Not supported here (use the single environment): ``activation_perturbation`` and the recorder hooks; a
recorder can follow one environment of the batch through :meth:`~MyoLegsVectorEnv.view`.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from kinesis_neuro.envs.imitation import ImitationConfig, MyoLegsImitationEnv, step_rewards
from kinesis_neuro.envs.reference import _NEXT, _PREVIOUS
from kinesis_neuro.errors import KinesisNeuroError

BACKENDS = ("auto", "c", "numpy")

# pointers per environment in the C kernel's table
_POINTERS = ("data", "act", "ctrl", "actuator_length", "actuator_velocity", "actuator_force", "xpos", "xmat",
             "cvel", "subtree_com", "sensordata", "qpos")

_KERNEL = r"""
/* kinesis-neuro vectorised MyoLegs: target-length control substeps and state gathering (see vector.py) */
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef void (*mj_fn)(const void* m, void* d);
typedef double (*gain_fn)(double len, double vel, const double* range, double acc0, const double* prm);
typedef double (*bias_fn)(double len, const double* range, double acc0, const double* prm);
enum { P_DATA, P_ACT, P_CTRL, P_LEN, P_VEL, P_FORCE, P_XPOS, P_XMAT, P_CVEL, P_COM, P_SENSOR, P_QPOS, NPTR };

/* numpy's maximum / minimum: NaN-propagating */
static double np_max(double a, double b) { return (a >= b || a != a) ? a : b; }
static double np_min(double a, double b) { return (a <= b || a != a) ? a : b; }

int kn_version(void) { return 3; }

/* muscle force at activation 0 (bias) and 1 minus it (gain), as MyoLegsImitationEnv computes them with two
   mj_fwdActuation calls (d->act all 0, then all 1). mj_fwdActuation computes force = gain * act, then
   force += bias, with gain and bias from mju_muscleGain and mju_muscleBias: at act 0 that is bias, at act 1
   gain + bias, whether or not the multiply-add is fused. muscles[] = {lengthrange, acc0, gainprm, biasprm}. */
static void muscle_forces(void* const* fns, void* const* muscles, int nprm, const double* len, const double* vel,
                          int nu, double* bias, double* one) {
  gain_fn gain_of = (gain_fn)fns[3];
  bias_fn bias_of = (bias_fn)fns[4];
  const double* range = (const double*)muscles[0];
  const double* acc0 = (const double*)muscles[1];
  const double* gainprm = (const double*)muscles[2];
  const double* biasprm = (const double*)muscles[3];
  for (int j = 0; j < nu; j++) {
    double g = gain_of(len[j], vel[j], range + 2 * j, acc0[j], gainprm + (int64_t)nprm * j);
    double b = bias_of(len[j], range + 2 * j, acc0[j], biasprm + (int64_t)nprm * j);
    double f0 = g * 0.0;
    f0 += b;
    double f1 = g * 1.0;
    f1 += b;
    bias[j] = f0;
    one[j] = f1;
  }
}

/* both ways of computing (bias, force at activation 1) for one environment, for the self-check */
void kn_muscle_check(const void* m, void* const* fns, void* const* table, int i, void* const* muscles, int nprm,
                     int nu, double* fast, double* slow) {
  mj_fn actuation = (mj_fn)fns[2];
  void* const* p = table + (int64_t)i * NPTR;
  double* act = (double*)p[P_ACT];
  const double* force = (const double*)p[P_FORCE];
  muscle_forces(fns, muscles, nprm, (const double*)p[P_LEN], (const double*)p[P_VEL], nu, fast, fast + nu);
  for (int j = 0; j < nu; j++) act[j] = 0.0;
  actuation(m, p[P_DATA]);
  memcpy(slow, force, sizeof(double) * nu);
  for (int j = 0; j < nu; j++) act[j] = 1.0;
  actuation(m, p[P_DATA]);
  memcpy(slow + nu, force, sizeof(double) * nu);
}

/* frame_skip substeps of target-length control for the environments idx[0..n): the operations of
   MyoLegsImitationEnv.step / _target_length_activation / _perturbed, in their order. With muscles (not
   NULL), the muscle forces at activation 0 and 1 come from muscle_forces instead of two mj_fwdActuation calls
   (the same numbers, verified at start-up; mj_step2 computes every actuator output again). dynamics: the
   command goes to ctrl only (MuJoCo integrates act), else to act and ctrl. record (or NULL): each substep's
   command, row k * frame_skip + substep. bias: scratch of 3 nu doubles. */
void kn_target_length(const void* m, void* const* fns, void* const* table, const int64_t* idx, int n, int nu,
                      int frame_skip, const double* target, const double* kp, const double* flim,
                      const double* mask, double* bias, void* const* muscles, int nprm, int dynamics,
                      double* record) {
  mj_fn step1 = (mj_fn)fns[0], step2 = (mj_fn)fns[1], actuation = (mj_fn)fns[2];
  double* one = bias + nu;
  double* saved = bias + 2 * nu;
  for (int k = 0; k < n; k++) {
    void* const* p = table + idx[k] * NPTR;
    void* d = p[P_DATA];
    double* act = (double*)p[P_ACT];
    double* ctrl = (double*)p[P_CTRL];
    const double* len = (const double*)p[P_LEN];
    const double* vel = (const double*)p[P_VEL];
    const double* force = (const double*)p[P_FORCE];
    const double* tgt = target + (int64_t)k * nu;
    for (int s = 0; s < frame_skip; s++) {
      step1(m, d);
      if (muscles) {
        muscle_forces(fns, muscles, nprm, len, vel, nu, bias, one);
      } else {
        memcpy(saved, act, sizeof(double) * nu);
        for (int j = 0; j < nu; j++) act[j] = 0.0;
        actuation(m, d);
        memcpy(bias, force, sizeof(double) * nu);
        for (int j = 0; j < nu; j++) act[j] = 1.0;
        actuation(m, d);
        memcpy(one, force, sizeof(double) * nu);
        memcpy(act, saved, sizeof(double) * nu);
      }
      double* rec = record ? record + ((int64_t)k * frame_skip + s) * nu : NULL;
      for (int j = 0; j < nu; j++) {
        double gain = one[j] - bias[j];
        double f = kp[j] * ((tgt[j] - len[j]) - 0.1 * vel[j]);
        f = np_min(np_max(f, flim[j]), 0.0);
        double a = (f - bias[j]) / np_min(gain, -1e-9);
        a = np_min(np_max(a, 0.0), 1.0) * mask[j];
        if (!dynamics) act[j] = a;
        ctrl[j] = a;
        if (rec) rec[j] = a;
      }
      step2(m, d);
    }
  }
}

/* the state an observation needs, environment idx[k] into row k of each batch array */
void kn_gather(void* const* table, const int64_t* idx, int n, const int32_t* bodies, const int32_t* roots, int nb,
               const int32_t* sensors, int ns, int nu, int nq, double* xpos, double* xmat, double* cvel,
               double* com, double* sensor, double* len, double* vel, double* force, uint8_t* finite) {
  for (int k = 0; k < n; k++) {
    void* const* p = table + idx[k] * NPTR;
    const double* x = (const double*)p[P_XPOS];
    const double* r = (const double*)p[P_XMAT];
    const double* c = (const double*)p[P_CVEL];
    const double* s = (const double*)p[P_COM];
    const double* sd = (const double*)p[P_SENSOR];
    const double* q = (const double*)p[P_QPOS];
    for (int b = 0; b < nb; b++) {
      memcpy(xpos + ((int64_t)k * nb + b) * 3, x + 3 * bodies[b], 3 * sizeof(double));
      memcpy(xmat + ((int64_t)k * nb + b) * 9, r + 9 * bodies[b], 9 * sizeof(double));
      memcpy(cvel + ((int64_t)k * nb + b) * 6, c + 6 * bodies[b], 6 * sizeof(double));
      memcpy(com + ((int64_t)k * nb + b) * 3, s + 3 * roots[b], 3 * sizeof(double));
    }
    for (int j = 0; j < ns; j++) sensor[(int64_t)k * ns + j] = sd[sensors[j]];
    memcpy(len + (int64_t)k * nu, p[P_LEN], nu * sizeof(double));
    memcpy(vel + (int64_t)k * nu, p[P_VEL], nu * sizeof(double));
    memcpy(force + (int64_t)k * nu, p[P_FORCE], nu * sizeof(double));
    uint8_t ok = 1;
    for (int j = 0; j < nq; j++) ok &= (uint8_t)isfinite(q[j]);
    finite[k] = ok;
  }
}
"""

_kernel_lock = threading.Lock()
_kernel_cache: dict = {}


def _cache_dir() -> Path:
    base = os.environ.get("KINESIS_NEURO_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kinesis_neuro"


def _mujoco_library() -> Path | None:
    folder = Path(mujoco.__file__).parent
    for pattern in ("libmujoco.so*", "libmujoco*.dylib", "mujoco.dll"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def load_kernel():
    """``(kernel, function pointers)`` of the C backend, compiled at first use and cached; ``None`` where it
    cannot be built (no C compiler, no MuJoCo shared library, a platform without ``dlopen`` semantics)."""
    with _kernel_lock:
        if "kernel" in _kernel_cache:
            return _kernel_cache["kernel"]
        _kernel_cache["kernel"] = kernel = _build_kernel()
        return kernel


def _build_kernel():
    library = _mujoco_library()
    if library is None or sys.platform == "win32":
        return None
    compiler = os.environ.get("CC", "cc")
    flags = ["-O2", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math"]
    key = hashlib.sha256("\n".join([_KERNEL, mujoco.__version__, platform.machine(), sys.platform, compiler,
                                    *flags]).encode()).hexdigest()[:16]
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    for folder in (_cache_dir(), Path(tempfile.gettempdir()) / f"kinesis_neuro-{os.getuid()}"):
        path = folder / f"vector_kernel-{key}{suffix}"
        if not path.exists():
            try:
                folder.mkdir(parents=True, exist_ok=True)
                source = folder / f"vector_kernel-{key}-{os.getpid()}.c"
                partial = folder / f".vector_kernel-{key}-{os.getpid()}{suffix}"
                source.write_text(_KERNEL)
                try:
                    subprocess.run([compiler, *flags, str(source), "-o", str(partial), "-lm"], check=True,
                                   capture_output=True, timeout=120)
                    os.replace(partial, path)  # atomic: processes building at once each rename a whole file
                finally:
                    source.unlink(missing_ok=True)
                    partial.unlink(missing_ok=True)
            except (OSError, subprocess.SubprocessError):
                continue
        try:
            kernel = ctypes.CDLL(str(path))
            mj = ctypes.CDLL(str(library))  # the library the mujoco bindings loaded (same file: same instance)
            if kernel.kn_version() != 3:
                continue
        except OSError:
            continue
        names = ("mj_step1", "mj_step2", "mj_fwdActuation", "mju_muscleGain", "mju_muscleBias")
        functions = (ctypes.c_void_p * len(names))(*[ctypes.cast(getattr(mj, name), ctypes.c_void_p).value
                                                     for name in names])
        p, i = ctypes.c_void_p, ctypes.c_int
        kernel.kn_target_length.argtypes = [p, p, p, p, i, i, i, p, p, p, p, p, p, i, i, p]
        kernel.kn_muscle_check.argtypes = [p, p, p, i, p, i, i, p, p]
        kernel.kn_muscle_check.restype = None
        kernel.kn_target_length.restype = None
        kernel.kn_gather.argtypes = [p, p, i, p, p, i, p, i, i, i, p, p, p, p, p, p, p, p, p]
        kernel.kn_gather.restype = None
        return kernel, functions
    return None


class MyoLegsVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` :class:`MyoLegsImitationEnv` (one configuration) stepped together; observations
    ``(num_envs, n_obs)`` float64, actions ``(num_envs, 80)`` in [-1, 1]. See the module docstring."""

    def __init__(self, num_envs: int = 8, config: ImitationConfig | None = None, *, autoreset: bool = True,
                 backend: str = "auto", **overrides):
        if not (isinstance(num_envs, (int, np.integer)) and not isinstance(num_envs, bool) and num_envs >= 1):
            raise KinesisNeuroError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if backend not in BACKENDS:
            raise KinesisNeuroError(f"backend must be one of {BACKENDS}, got {backend!r}")
        # one single environment builds the model and the reference table the batch shares; its own MjData
        # stays unused
        self.template = template = MyoLegsImitationEnv(config, **overrides)
        self.config, self.model, self.reference = template.config, template.model, template.reference
        self.muscles, self.frame_skip, self.max_steps = template.muscles, template.frame_skip, template.max_steps
        self.clip_names = template.clip_names
        self.num_envs = n = int(num_envs)
        self.single_observation_space = template.observation_space
        self.single_action_space = template.action_space
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self.autoreset_mode = AutoresetMode.SAME_STEP if autoreset else AutoresetMode.DISABLED
        self.metadata = {"autoreset_mode": self.autoreset_mode}
        self.datas = [mujoco.MjData(self.model) for _ in range(n)]
        m = self.model
        self._views = [{name: getattr(d, name) for name in _POINTERS[1:]} for d in self.datas]
        self._bodies = template._bodies
        nb, nu = len(self._bodies), m.nu
        self._roots = m.body_rootid[self._bodies].astype(np.int32)
        self._sensors = np.array(template._heel_sensors + template._toe_sensors, np.int32)
        self._lookahead = np.array(template.config.lookahead, np.int64)
        # per-environment episode position (clip, start row in the table, step, steps before truncation), RNG
        # and statistics
        self._start = np.zeros(n, np.int64)
        self._step = np.zeros(n, np.int64)
        self._clip = np.zeros(n, np.int64)
        self._limit = np.full(n, self.max_steps, np.int64)
        self._terms = {}  # reward terms of each environment's last step (final_info)
        self._rngs: list[np.random.Generator | None] = [None] * n
        self.last_tracking_error = np.zeros(n)
        self.episode_return = np.zeros(n)
        self.episode_length = np.zeros(n, np.int64)
        self._ended = np.zeros(n, bool)  # DISABLED autoreset: episodes waiting for a reset
        # batch buffers (rows follow the order of the environments stepped)
        self._xpos, self._xmat = np.zeros((n, nb, 3)), np.zeros((n, nb, 9))
        self._cvel, self._com = np.zeros((n, nb, 6)), np.zeros((n, nb, 3))
        self._sensor = np.zeros((n, len(self._sensors)))
        self._length, self._velocity_m, self._force = np.zeros((n, nu)), np.zeros((n, nu)), np.zeros((n, nu))
        self._finite = np.zeros(n, np.uint8)
        self._bias, self._one, self._saved = np.zeros((n, nu)), np.zeros((n, nu)), np.zeros((n, nu))
        # the excitations of every substep of the last control step (rows in stepping order)
        self._substeps = np.zeros((n, 1 if self.config.control_mode == "direct" else self.frame_skip, nu))
        self._heading = np.zeros((n, 3, 3))
        self._heading[:, 2, 2] = 1.0
        self._all = np.arange(n, dtype=np.int64)
        self._last_obs = np.zeros(self.observation_space.shape)  # DISABLED autoreset: for partial resets
        self._substep_hook = None  # numpy backend only: called with (indices, activations) at every substep
        self._kernel = None
        if backend == "auto":
            backend = os.environ.get("KINESIS_NEURO_VECTOR_BACKEND", "auto")
        if backend in ("auto", "c"):
            loaded = load_kernel()
            if loaded is None and backend == "c":
                raise KinesisNeuroError("the C backend of the vectorised environment could not be built (needs a C "
                                        "compiler, cc or $CC); use backend='numpy'")
            if loaded is not None:
                self._kernel, self._functions = loaded
                self._table = np.array([[d._address] + [self._views[i][name].ctypes.data for name in _POINTERS[1:]]
                                        for i, d in enumerate(self.datas)], np.uint64)
                self._c_bodies = np.ascontiguousarray(self._bodies, np.int32)
                self._target = np.zeros((n, nu))
                self._scratch = np.zeros(3 * nu)
                self._idx = np.zeros(n, np.int64)
                # addresses of the arrays every call passes (numpy's .ctypes costs a microsecond per access)
                a = {name: getattr(self, name).ctypes.data for name in (
                    "_table", "_c_bodies", "_roots", "_sensors", "_xpos", "_xmat", "_cvel", "_com", "_sensor",
                    "_length", "_velocity_m", "_force", "_finite", "_scratch", "_target", "_idx", "_substeps")}
                self._gather_args = (a["_table"], a["_idx"], a["_c_bodies"], a["_roots"], len(self._bodies),
                                     a["_sensors"], len(self._sensors), nu, m.nq, a["_xpos"], a["_xmat"], a["_cvel"],
                                     a["_com"], a["_sensor"], a["_length"], a["_velocity_m"], a["_force"],
                                     a["_finite"])
                self._control_args = (m._address, ctypes.addressof(self._functions), a["_table"], a["_idx"])
                self._control_buffers = (a["_target"], a["_scratch"], a["_substeps"])
                self._muscles = self._muscle_fast_path()
        self.backend = "c" if self._kernel is not None else "numpy"

    def _muscle_fast_path(self) -> tuple:
        """``(muscle pointers, nprm)`` for the C kernel's direct muscle forces, or ``(None, 0)`` (two
        ``mj_fwdActuation`` calls per substep instead) unless every actuator is a plain MuJoCo muscle, nothing
        else changes actuator forces, and both ways give the same bits on reference states."""
        m = self.model
        plain = (np.all(m.actuator_gaintype == mujoco.mjtGain.mjGAIN_MUSCLE)
                 and np.all(m.actuator_biastype == mujoco.mjtBias.mjBIAS_MUSCLE)
                 and np.all(m.actuator_dyntype == mujoco.mjtDyn.mjDYN_MUSCLE) and np.all(m.actuator_actnum == 1)
                 and not m.actuator_actearly.any() and not m.actuator_forcelimited.any()
                 and np.all(m.actuator_plugin == -1) and not m.tendon_actfrclimited.any() and m.nplugin == 0
                 and m.opt.disableactuator == 0 and not m.opt.disableflags & mujoco.mjtDisableBit.mjDSBL_ACTUATION
                 and not m.opt.enableflags & mujoco.mjtEnableBit.mjENBL_SLEEP
                 and m.actuator_gainprm.shape[1] == m.actuator_biasprm.shape[1])
        if not plain:
            return None, 0
        arrays = (m.actuator_lengthrange, m.actuator_acc0, m.actuator_gainprm, m.actuator_biasprm)
        if not all(a.flags.c_contiguous and a.dtype == np.float64 for a in arrays):
            return None, 0
        self._muscle_pointers = (ctypes.c_void_p * 4)(*[a.ctypes.data for a in arrays])
        nprm, nu = m.actuator_gainprm.shape[1], m.nu
        fast, slow = np.zeros(2 * nu), np.zeros(2 * nu)
        d = self.datas[0]
        rng = np.random.default_rng(0)
        for k in range(4):  # reference states, moving and pushed (long and short muscles, fast and slow)
            row = (k * 37) % len(self.reference.qpos)
            d.qpos[:], d.qvel[:] = self.reference.qpos[row], self.reference.qvel[row] * (1 + k)
            d.qpos[7:] += rng.normal(0.0, 0.1 * k, m.nq - 7)
            mujoco.mj_forward(m, d)
            self._kernel.kn_muscle_check(m._address, ctypes.addressof(self._functions), self._table.ctypes.data, 0,
                                         ctypes.addressof(self._muscle_pointers), nprm, nu, fast.ctypes.data,
                                         slow.ctypes.data)
            if not np.array_equal(fast.view(np.uint64), slow.view(np.uint64)):
                return None, 0
        mujoco.mj_resetData(m, d)
        return ctypes.addressof(self._muscle_pointers), nprm

    # -- the single environment's settings --------------------------------------------------------
    def set_ablation(self, muscles) -> None:
        """Silence ``muscles`` in every environment (see :meth:`MyoLegsImitationEnv.set_ablation`)."""
        self.template.set_ablation(muscles)

    def set_weakness(self, factors: dict[str, float]) -> None:
        """Scale max isometric forces in every environment (see :meth:`MyoLegsImitationEnv.set_weakness`)."""
        self.template.set_weakness(factors)

    def set_clip_weights(self, weights) -> None:
        """Probabilities of the clips at every environment's reset (see
        :meth:`MyoLegsImitationEnv.set_clip_weights`)."""
        self.template.set_clip_weights(weights)

    @property
    def clip_weights(self) -> np.ndarray:
        return self.template.clip_weights

    def mirror_maps(self):
        return self.template.mirror_maps()

    def view(self, i: int) -> EnvView:
        """Environment ``i`` seen as a single environment (``data``, ``model``, ``reference``, ``muscles``,
        ``config``, ``last_tracking_error``, ``foot_contact()``, ``_ref_index()``): what an
        :class:`~kinesis_neuro.envs.recorder.EpisodeRecorder` reads."""
        return EnvView(self, i)

    # -- exact save and restore --------------------------------------------------------------------
    @property
    def state(self) -> list[dict]:
        """Per environment: the single environment's :attr:`~MyoLegsImitationEnv.state` (clip weights
        included, the same in every entry) plus its episode statistics (``episode_return``, ``episode_length``)."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        out, weights = [], self.template.clip_weights.tolist()
        for i, d in enumerate(self.datas):
            physics = np.zeros(mujoco.mj_stateSize(self.model, spec))
            mujoco.mj_getState(self.model, d, physics, spec)
            out.append({"physics": physics, "start": int(self._start[i]), "step": int(self._step[i]),
                        "clip": int(self._clip[i]), "clip_weights": weights, "rng": self._rng(i).bit_generator.state,
                        "episode_return": float(self.episode_return[i]), "episode_length": int(self.episode_length[i])})
        return out

    @state.setter
    def state(self, value: list[dict]) -> None:
        if len(value) != self.num_envs:
            raise KinesisNeuroError(f"{len(value)} environment states for {self.num_envs} environments")
        spec, t = mujoco.mjtState.mjSTATE_INTEGRATION, self.template
        if value and "clip_weights" in value[0]:
            t.set_clip_weights(value[0]["clip_weights"])
        for i, (d, s) in enumerate(zip(self.datas, value)):
            mujoco.mj_setState(self.model, d, np.asarray(s["physics"], dtype=float), spec)
            mujoco.mj_forward(self.model, d)
            self._start[i], self._step[i] = int(s["start"]), int(s["step"])
            self._clip[i] = t._clip_index(int(s.get("clip", 0)))
            self._limit[i] = t._episode_limit(int(self._clip[i]), int(self._start[i]))
            self._rng(i).bit_generator.state = s["rng"]
            self.episode_return[i] = float(s.get("episode_return", 0.0))
            self.episode_length[i] = int(s.get("episode_length", 0))
        self._ended[:] = False

    # -- Gymnasium API -----------------------------------------------------------------------------
    def _rng(self, i: int) -> np.random.Generator:
        if self._rngs[i] is None:
            self._rngs[i], _ = seeding.np_random()
        return self._rngs[i]

    def reset(self, *, seed: int | list | None = None, options: dict | None = None):
        """Reset every environment (or, with ``options["reset_mask"]``, those marked). ``seed``: an int
        (environment ``i`` gets ``seed + i``), a list of per-environment seeds (``None`` entries keep that RNG
        going) or ``None``. Other ``options`` go to every environment as in
        :meth:`MyoLegsImitationEnv.reset` (``clip``, ``start``, ``start_noise``, ``noise_seed``)."""
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise KinesisNeuroError(f"{len(seeds)} seeds for {self.num_envs} environments")
        idx = self._all if mask is None else np.flatnonzero(np.asarray(mask, bool))
        for i in idx:
            self._reset_physics(int(i), seeds[i], options)
        obs = self._observe(idx)[0]
        infos = {}
        for k, i in enumerate(idx):
            infos = self._add_info(infos, {"tracking_error": 0.0, "reference_time": self._reference_time(i),
                                           "clip": int(self._clip[i])}, int(i))
        if mask is None:
            self._last_obs = obs.copy()
            return obs, infos
        self._last_obs[idx] = obs
        return self._last_obs.copy(), infos

    def reset_env(self, i: int, *, seed: int | None = None, options: dict | None = None) -> np.ndarray:
        """Reset environment ``i`` alone, as :meth:`MyoLegsImitationEnv.reset` with ``seed`` and ``options``
        (``clip``, ``start``, ``start_noise``, ``noise_seed``); returns its first observation."""
        self._reset_physics(i, seed, options or {})
        return self._observe(np.array([i], np.int64))[0][0]

    def _reset_physics(self, i: int, seed: int | None, options: dict) -> None:
        """:meth:`MyoLegsImitationEnv.reset` without the observation, for environment ``i``."""
        if seed is not None:
            self._rngs[i], _ = seeding.np_random(seed)
        clip, start, limit = self.template.draw_episode(self._rng(i), options)
        m, d = self.model, self.datas[i]
        mujoco.mj_resetData(m, d)
        d.qpos[:], d.qvel[:] = self.reference.qpos[start], self.reference.qvel[start]
        noise = options.get("start_noise", 0.0)
        if not noise >= 0.0:
            raise KinesisNeuroError(f"start_noise must be a std >= 0, got {noise}")
        if noise > 0.0:
            rng = np.random.default_rng(options.get("noise_seed", 0))
            d.qpos[:] += rng.normal(0.0, noise, m.nq)
            d.qvel[:] += rng.normal(0.0, noise, m.nv)
        mujoco.mj_forward(m, d)
        self._clip[i], self._start[i], self._step[i], self._limit[i] = clip, start, 0, limit
        self.last_tracking_error[i] = 0.0
        self.episode_return[i], self.episode_length[i] = 0.0, 0
        self._ended[i] = False

    def step(self, actions):
        """One control step of every environment (Gymnasium's vector API; see the module docstring for
        autoreset and ``infos``)."""
        if self.autoreset_mode == AutoresetMode.DISABLED and self._ended.any():
            raise KinesisNeuroError(f"environments {np.flatnonzero(self._ended).tolist()} ended: reset them with "
                                    "reset(options={'reset_mask': mask}) first (autoreset=False)")
        obs, reward, terminated, truncated = self._step_envs(self._all, actions)
        infos = {}
        done = terminated | truncated
        if done.any():
            ended = np.flatnonzero(done)
            for i in ended:
                i = int(i)
                infos = self._add_info(infos, {"final_obs": obs[i], "final_info": self._final_info(i),
                                               "episode": {"r": float(self.episode_return[i]),
                                                           "l": int(self.episode_length[i])}}, i)
            if self.autoreset_mode == AutoresetMode.SAME_STEP:
                for i in ended:
                    self._reset_physics(int(i), None, {})
                obs = obs.copy()
                obs[ended] = self._observe(ended)[0]
            else:
                self._ended[ended] = True
        if self.autoreset_mode == AutoresetMode.DISABLED:
            self._last_obs = obs.copy()
        return obs, reward, terminated, truncated, infos

    def step_envs(self, indices, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One control step of the environments ``indices`` only (``actions``: one row each), without
        autoreset or infos: ``(obs, reward, terminated, truncated)`` with one row per index. Their tracking
        errors are in :attr:`last_tracking_error`. For evaluation, where episodes end at different steps."""
        idx = np.asarray(indices, np.int64).reshape(-1)
        return self._step_envs(idx, actions)

    def close(self, **kwargs) -> None:
        self.closed = True

    # -- one control step ------------------------------------------------------------------------------
    def _step_envs(self, idx: np.ndarray, actions):
        n = len(idx)
        action = np.clip(np.asarray(actions, dtype=float).reshape(n, -1), -1.0, 1.0)
        t, c = self.template, self.config
        substeps = self._substeps[:n]
        if c.control_mode == "direct":
            excitation = (0.5 * (action + 1.0)) * t._mask
            substeps[:, 0] = excitation
            for k, i in enumerate(idx):
                d = self.datas[i]
                d.ctrl[:] = excitation[k]
                mujoco.mj_step(self.model, d, nstep=self.frame_skip)
        else:
            if self._kernel is not None and self._substep_hook is None:
                target = self._target[:n]
                np.multiply(t._length_centre, 1.0 + action, out=target)
                self._idx[:n] = idx
                m, functions, table, indices = self._control_args
                self._kernel.kn_target_length(m, functions, table, indices, n, self.model.nu, self.frame_skip,
                                              self._control_buffers[0], t._kp.ctypes.data, t._force_limit.ctypes.data,
                                              t._mask.ctypes.data, self._control_buffers[1], *self._muscles,
                                              int(c.activation_dynamics), self._control_buffers[2])
            else:
                self._target_length_numpy(idx, t._length_centre * (1.0 + action))
        self._step[idx] += 1
        obs, diff, vdiff, finite = self._observe(idx, reward=True)
        distance, farthest, reward, terms = step_rewards(
            c, diff, vdiff, self._xmat[:n, 0, 7].tolist(), [self._views[i]["act"] for i in idx], substeps,
            t._effort_share)
        for name, values in terms.items():
            self._terms.setdefault(name, np.zeros(self.num_envs))[idx] = values
        error = farthest if c.termination == "any" else distance
        terminated = (error > c.termination_distance) | ~finite
        reward = np.array(reward)
        self.last_tracking_error[idx] = distance
        truncated = self._step[idx] >= self._limit[idx]
        self.episode_return[idx] += reward
        self.episode_length[idx] += 1
        return obs, reward, terminated, truncated

    def _target_length_numpy(self, idx: np.ndarray, target: np.ndarray) -> None:
        """The substeps of target-length control with numpy over the batch (the C kernel's fallback)."""
        m, t, n = self.model, self.template, len(idx)
        dynamics = self.config.activation_dynamics
        views = [self._views[i] for i in idx]
        datas = [self.datas[i] for i in idx]
        length, velocity, bias, one = self._length[:n], self._velocity_m[:n], self._bias[:n], self._one[:n]
        saved = self._saved[:n]
        for s in range(self.frame_skip):
            for k, (d, v) in enumerate(zip(datas, views)):
                mujoco.mj_step1(m, d)
                length[k], velocity[k], saved[k] = v["actuator_length"], v["actuator_velocity"], v["act"]
                v["act"][:] = 0.0
                mujoco.mj_fwdActuation(m, d)
                bias[k] = v["actuator_force"]
                v["act"][:] = 1.0
                mujoco.mj_fwdActuation(m, d)
                one[k] = v["actuator_force"]
                v["act"][:] = saved[k]
            gain = one - bias
            force = np.minimum(np.maximum(t._kp * (target - length - 0.1 * velocity), t._force_limit), 0.0)
            activation = (force - bias) / np.minimum(gain, -1e-9)
            activation = np.minimum(np.maximum(activation, 0.0), 1.0) * t._mask
            if self._substep_hook is not None:
                self._substep_hook(idx, activation)
            self._substeps[:n, s] = activation
            for k, (d, v) in enumerate(zip(datas, views)):
                if not dynamics:
                    v["act"][:] = activation[k]
                v["ctrl"][:] = activation[k]
                mujoco.mj_step2(m, d)

    # -- observation and reward, batched ---------------------------------------------------------------
    def _gather(self, idx: np.ndarray) -> None:
        n = len(idx)
        if self._kernel is not None:
            self._idx[:n] = idx
            table, indices, *rest = self._gather_args
            self._kernel.kn_gather(table, indices, n, *rest)
            return
        bodies, roots, sensors = self._bodies, self._roots, self._sensors
        for k, i in enumerate(idx):
            v = self._views[i]
            np.take(v["xpos"], bodies, axis=0, out=self._xpos[k])
            np.take(v["xmat"], bodies, axis=0, out=self._xmat[k])
            np.take(v["cvel"], bodies, axis=0, out=self._cvel[k])
            np.take(v["subtree_com"], roots, axis=0, out=self._com[k])
            np.take(v["sensordata"], sensors, out=self._sensor[k])
            self._length[k], self._velocity_m[k], self._force[k] = (v["actuator_length"], v["actuator_velocity"],
                                                                    v["actuator_force"])
            self._finite[k] = np.isfinite(v["qpos"]).all()

    def _observe(self, idx: np.ndarray, reward: bool = False):
        """Observations of the environments ``idx`` (rows in that order), the operations of
        :meth:`MyoLegsImitationEnv._observation` on a batch; with ``reward`` also the reference-minus-body
        positions and velocities of the tracked bodies (n, bodies, 3) and whether the state is finite."""
        n = len(idx)
        self._gather(idx)
        t = self.template
        xpos, xmat, cvel = self._xpos[:n], self._xmat[:n], self._cvel[:n]
        # heading: yaw of the pelvis forward axis, with the math module's atan2/cos/sin as the single env
        yaw = [math.atan2(a, b) for a, b in zip(xmat[:, 0, 3].tolist(), xmat[:, 0, 0].tolist())]
        cos, sin = [math.cos(y) for y in yaw], [math.sin(y) for y in yaw]
        heading = self._heading[:n]
        heading[:, 0, 0], heading[:, 0, 1], heading[:, 1, 0], heading[:, 1, 1] = cos, sin, [-s for s in sin], cos
        to_heading = heading.transpose(0, 2, 1)
        root = xpos[:, 0]
        # world linear velocities of the body origins (reference.body_linear_velocity on a batch)
        r = xpos - self._com[:n]
        velocity = cvel[:, :, 3:] + cvel[:, :, _NEXT] * r[:, :, _PREVIOUS] - cvel[:, :, _PREVIOUS] * r[:, :, _NEXT]
        index = self._start[idx] + self._step[idx] * self.frame_skip
        ahead = self._start[idx, None] + (self._step[idx, None] + self._lookahead) * self.frame_skip
        reference_now = self.reference.xpos[index]
        parts = [
            root[:, 2:],
            -xmat[:, 0, 6:9],  # gravity direction in the pelvis frame
            ((xpos[:, 1:] - root[:, None]) @ to_heading).reshape(n, -1),
            (heading[:, None] @ xmat.reshape(n, -1, 3, 3))[:, :, :, :2].reshape(n, -1),
            (velocity @ to_heading).reshape(n, -1),
            (np.ascontiguousarray(cvel[:, :, :3]) @ to_heading).reshape(n, -1),
            (self._sensor[:n, :2] > 0).astype(float),
            ((reference_now - xpos) @ to_heading).reshape(n, -1),
            ((self.reference.xpos[ahead] - root[:, None, None]) @ to_heading[:, None]).reshape(n, -1),
        ]
        if self.config.muscle_observations:
            parts += [self._length[:n] / t._l0, self._velocity_m[:n] / t._l0, self._force[:n] / t._force_scale]
        if self.config.toe_contact:
            parts.append((self._sensor[:n, 2:] > 0).astype(float))
        obs = np.concatenate(parts, axis=1)
        if not reward:
            return (obs,)
        return obs, reference_now - xpos, self.reference.xvel[index] - velocity, self._finite[:n].astype(bool)

    def _reference_time(self, i: int) -> float:
        return float(self.reference.time[self._start[i] + self._step[i] * self.frame_skip])

    def _final_info(self, i: int) -> dict:
        """The single environment's step info of environment ``i``'s last step."""
        return {"tracking_error": float(self.last_tracking_error[i]), "reference_time": self._reference_time(i),
                "clip": int(self._clip[i]), **{f"reward_{k}": float(v[i]) for k, v in self._terms.items()}}


class EnvView:
    """One environment of a :class:`MyoLegsVectorEnv` with the attributes of a single environment that an
    :class:`~kinesis_neuro.envs.recorder.EpisodeRecorder` reads."""

    def __init__(self, vector: MyoLegsVectorEnv, i: int):
        self.vector, self.i = vector, i
        self.model, self.data, self.reference = vector.model, vector.datas[i], vector.reference
        self.muscles, self.config = vector.muscles, vector.config

    @property
    def last_tracking_error(self) -> float:
        return float(self.vector.last_tracking_error[self.i])

    @property
    def clip(self) -> int:
        return int(self.vector._clip[self.i])

    @property
    def clip_names(self) -> tuple[str, ...]:
        return self.vector.clip_names

    def _ref_index(self, ahead: int = 0) -> int:
        v = self.vector
        return int(v._start[self.i] + (v._step[self.i] + ahead) * v.frame_skip)

    def foot_contact(self) -> np.ndarray:
        t = self.vector.template
        d = self.data
        return (d.sensordata[t._heel_sensors] > 0) | (d.sensordata[t._toe_sensors] > 0)

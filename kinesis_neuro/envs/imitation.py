"""KINESIS-style motion-imitation environment for the muscle-driven MyoLegs model (Gymnasium API).

The policy sees proprioception (root height and tilt, body positions, rotations and velocities in
the heading frame, foot contacts, optionally muscle length/velocity/force) and the task (distance
to the reference bodies now and their positions a few control steps ahead). Reward: position and
velocity tracking kernels, an upright term and an energy term. An episode ends early when the mean
tracked-body distance to the reference exceeds ``termination_distance``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import gymnasium as gym
import mujoco
import numpy as np

from kinesis_neuro import model as mdl
from kinesis_neuro.envs.reference import TRACKED_BODIES, ReferenceTable, body_linear_velocity, walking_reference
from kinesis_neuro.errors import KinesisNeuroError

CONTROL_MODES = ("direct", "target-length")


@dataclass
class ImitationConfig:
    """Settings of :class:`MyoLegsImitationEnv` (times in s, rates in Hz, distances in m)."""

    motion: str = "moco-walk"
    grf: str | None = "moco-walk/grf_walk.mot"
    half_cycle: tuple[float, float] | None = None
    on_floor: bool = True  # move the reference so the lower foot touches the floor (see walking_reference)
    sim_rate: float = 150.0
    control_rate: float = 30.0
    episode_seconds: float = 10.0
    termination_distance: float = 0.15
    control_mode: str = "target-length"
    muscle_observations: bool = True
    lookahead: tuple[int, ...] = (1, 5)
    k_pos: float = 200.0
    k_vel: float = 5.0
    k_energy: float = 0.05
    w_pos: float = 0.6
    w_vel: float = 0.2
    w_upright: float = 0.1
    w_energy: float = 0.1
    ablate: tuple[str, ...] = ()
    weaken: dict[str, float] = field(default_factory=dict)
    data_dir: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class MyoLegsImitationEnv(gym.Env):
    """Imitate a reference walk with 80 MyoLegs muscles; actions in [-1, 1]^80."""

    metadata = {"render_modes": []}

    def __init__(self, config: ImitationConfig | None = None, **overrides):
        self.config = config = config or ImitationConfig(**overrides)
        if config.control_mode not in CONTROL_MODES:
            raise KinesisNeuroError(f"control_mode must be one of {CONTROL_MODES}, got {config.control_mode!r}")
        self.frame_skip = int(round(config.sim_rate / config.control_rate))
        self.model = mdl.load_model(timestep=1.0 / config.sim_rate)
        self.data = mujoco.MjData(self.model)
        self.muscles = mdl.muscle_names(self.model)
        self._f_max = self.model.actuator_gainprm[:, 2].copy()
        self._mask, self._factor = np.ones(self.model.nu), np.ones(self.model.nu)
        self.set_ablation(config.ablate)
        self.set_weakness(config.weaken)
        reference = walking_reference(config.motion, grf=config.grf, half_cycle=config.half_cycle,
                                      duration=config.episode_seconds + 1.0, on_floor=config.on_floor,
                                      model=self.model, data_dir=config.data_dir)
        self.reference = ReferenceTable(self.model, reference, config.sim_rate)
        self.max_steps = int(round(config.episode_seconds * config.control_rate))
        needed = (self.max_steps + max(config.lookahead) + 1) * self.frame_skip
        self.n_start_phases = min(int(self.reference.period * config.sim_rate), len(self.reference.time) - needed)
        if self.n_start_phases < 1:
            raise KinesisNeuroError("the reference motion is shorter than an episode")
        self._bodies = self.reference.bodies
        # touch sensors (right, left): hindfoot (calcaneus; the policy observes these) and toes
        self._heel_sensors = [self.model.sensor(f"{s}_foot").id for s in ("r", "l")]
        self._toe_sensors = [self.model.sensor(f"{s}_toes").id for s in ("r", "l")]
        self._length_range = self.model.actuator_lengthrange.copy()
        self._length_centre = self._length_range.mean(axis=1)
        self._l0 = (self._length_range[:, 1] - self._length_range[:, 0]) / (
            self.model.actuator_gainprm[:, 1] - self.model.actuator_gainprm[:, 0])
        n_obs = self._observation_size()
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n_obs,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.model.nu,), np.float32)
        self.recorder = None  # an EpisodeRecorder while recording
        # called at the start of every control step; returns an activation offset (nu,) held over its
        # substeps (null-space perturbation studies), or None
        self.activation_perturbation = None
        self.last_tracking_error = 0.0
        self._start = 0
        self._step = 0

    # -- hooks for redundancy studies ---------------------------------------------------------
    def set_ablation(self, muscles) -> None:
        """Silence ``muscles`` (names or group names like ``quadriceps_r``): no excitation, activation or
        force, passive force included."""
        self._mask[:] = 1.0
        for name in self._resolve(muscles):
            self._mask[self.muscles.index(name)] = 0.0
        self._apply_strength()

    def set_weakness(self, factors: dict[str, float]) -> None:
        """Scale the max isometric force of muscles (or groups) by a factor in [0, 1]."""
        self._factor[:] = 1.0
        for key, factor in factors.items():
            if not 0.0 <= factor <= 1.0:
                raise KinesisNeuroError(f"weakness factor for {key!r} must be in [0, 1], got {factor}")
            for name in self._resolve([key]):
                self._factor[self.muscles.index(name)] = factor
        self._apply_strength()

    def _apply_strength(self) -> None:
        force = self._f_max * self._factor * self._mask
        self.model.actuator_gainprm[:, 2] = force
        self.model.actuator_biasprm[:, 2] = force
        self._kp, self._force_limit, self._force_scale = 5.0 * force, -force, force.clip(1e-9)

    def _resolve(self, names) -> list[str]:
        groups = mdl.muscle_groups(self.model) if names else {}
        out = []
        for name in names:
            if name in self.muscles:
                out.append(name)
            elif name in groups:
                out.extend(groups[name])
            else:
                raise KinesisNeuroError(f"unknown muscle or group {name!r}; muscles: {self.muscles}; "
                                        f"groups: {sorted(groups)}")
        return out

    # -- exact save and restore (for resumable training) ----------------------------------------
    @property
    def state(self) -> dict:
        """Everything the next step depends on: MuJoCo integration state, episode position, RNG."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.zeros(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, physics, spec)
        return {"physics": physics, "start": self._start, "step": self._step,
                "rng": self.np_random.bit_generator.state}

    @state.setter
    def state(self, value: dict) -> None:
        mujoco.mj_setState(self.model, self.data, np.asarray(value["physics"], dtype=float),
                           mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(self.model, self.data)
        self._sense()
        self._start, self._step = int(value["start"]), int(value["step"])
        self.np_random.bit_generator.state = value["rng"]

    # -- Gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start at a reference frame (``options["start"]``, else a random phase). ``options["start_noise"]``
        (default 0): std of Gaussian noise added to every start qpos and qvel entry, in their own units (m, rad,
        m/s, rad/s), drawn from ``numpy.random.default_rng(options["noise_seed"])`` (default 0); it stands in
        for the last-bit differences another CPU makes in a chaotic rollout."""
        super().reset(seed=seed)
        options = options or {}
        self._start = int(options.get("start", self.np_random.integers(self.n_start_phases)))
        self._step = 0
        d = self.data
        mujoco.mj_resetData(self.model, d)
        d.qpos[:], d.qvel[:] = self.reference.qpos[self._start], self.reference.qvel[self._start]
        noise = options.get("start_noise", 0.0)
        if not noise >= 0.0:
            raise KinesisNeuroError(f"start_noise must be a std >= 0, got {noise}")
        if noise > 0.0:
            rng = np.random.default_rng(options.get("noise_seed", 0))
            d.qpos[:] += rng.normal(0.0, noise, self.model.nq)
            d.qvel[:] += rng.normal(0.0, noise, self.model.nv)
        mujoco.mj_forward(self.model, d)
        self._sense()
        self.last_tracking_error = 0.0
        if self.recorder is not None:
            self.recorder.reset(self)
        return self._observation(), self._info(0.0)

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=float), -1.0, 1.0)
        offset = None if self.activation_perturbation is None else self.activation_perturbation(self)
        if self.config.control_mode == "direct":
            self._excitation = self._perturbed(0.5 * (action + 1.0), offset)
            self.data.ctrl[:] = self._excitation
            mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        else:
            target = self.target_length(action)
            for _ in range(self.frame_skip):
                mujoco.mj_step1(self.model, self.data)
                self._excitation = self._perturbed(self._target_length_activation(target), offset)
                self.data.act[:] = self.data.ctrl[:] = self._excitation
                mujoco.mj_step2(self.model, self.data)
        self._step += 1
        self._sense()
        distance, reward, terms = self._reward()
        self.last_tracking_error = distance
        terminated = bool(distance > self.config.termination_distance or not np.isfinite(self.data.qpos).all())
        truncated = self._step >= self.max_steps
        if self.recorder is not None:
            self.recorder.append(self)
        return self._observation(), reward, terminated, truncated, self._info(distance, terms)

    def foot_contact(self) -> np.ndarray:
        """Whether each foot (right, left) touches the ground with its hindfoot or its toes."""
        d = self.data
        return (d.sensordata[self._heel_sensors] > 0) | (d.sensordata[self._toe_sensors] > 0)

    def _sense(self) -> None:
        """Positions and linear velocities (world frame, m and m/s) of the tracked bodies after a step."""
        self._xpos = self.data.xpos[self._bodies]
        self._velocity = body_linear_velocity(self.model, self.data, self._bodies)

    def _perturbed(self, activation: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
        """``activation + offset`` kept in [0, 1], silenced muscles at zero."""
        if offset is not None:
            activation = np.clip(activation + offset, 0.0, 1.0)
        return activation * self._mask

    def target_length(self, action: np.ndarray) -> np.ndarray:
        """Target muscle-tendon lengths (m) of actions in [-1, 1]: ``c (1 + action)`` with ``c`` the middle of
        the muscle's length range. Action -1 asks for length 0, KINESIS's strongest command (its actions span
        [0, max length]); 0 asks for mid-range, so an untrained policy does not contract every muscle; the
        usual [min, max length] span would leave the median muscle a quarter of its force at most."""
        return self._length_centre * (1.0 + action)

    def _target_length_activation(self, target: np.ndarray) -> np.ndarray:
        """KINESIS 'PD' control: force = clip(kp (L* - L) - kd v, -Fmax, 0), kp = 5 Fmax, kd = 0.1 kp,
        turned into the activation that makes MuJoCo's muscle produce it (force = gain act + bias)."""
        d = self.data
        force = np.minimum(np.maximum(self._kp * (target - d.actuator_length - 0.1 * d.actuator_velocity),
                                      self._force_limit), 0.0)
        d.act[:] = 0.0  # MuJoCo's own actuation at activation 0 and 1 (d.act is set again by the caller)
        mujoco.mj_fwdActuation(self.model, d)
        bias = d.actuator_force.copy()
        d.act[:] = 1.0
        mujoco.mj_fwdActuation(self.model, d)
        gain = d.actuator_force - bias
        act = (force - bias) / np.minimum(gain, -1e-9)  # gain < 0 for every muscle with a force-length overlap
        return np.minimum(np.maximum(act, 0.0), 1.0)

    # -- observation and reward ------------------------------------------------------------------
    def _ref_index(self, ahead: int = 0) -> int:
        return self._start + (self._step + ahead) * self.frame_skip

    def _heading(self) -> np.ndarray:
        """World-to-heading rotation: yaw of the pelvis forward (local x) axis removed."""
        pelvis = self.data.xmat[self._bodies[0]]  # row-major 3x3: the forward axis is entries 0, 3, 6
        yaw = math.atan2(pelvis[3], pelvis[0])
        c, s = math.cos(yaw), math.sin(yaw)
        return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])

    def _observation_size(self) -> int:
        n = len(TRACKED_BODIES)
        size = 1 + 3 + 3 * (n - 1) + 6 * n + 3 * n + 3 * n + 2 + 3 * n + 3 * n * len(self.config.lookahead)
        return size + (3 * self.model.nu if self.config.muscle_observations else 0)

    def mirror_maps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(obs_index, obs_sign, action_index)``: the left-right mirror image of a state is
        ``obs[obs_index] * obs_sign`` and of an action ``action[action_index]`` (mirror plane: the sagittal
        plane of the heading frame, whose y axis points left; body frames have z pointing right).
        Used by the trainer's symmetry loss."""
        bodies = [TRACKED_BODIES.index(_other_side(b)) for b in TRACKED_BODIES]
        index, sign = [], []

        def block(order, per_item_sign):
            start = sum(len(i) for i in index)
            width = len(per_item_sign)
            index.append(np.array([start + width * o + k for o in order for k in range(width)]))
            sign.append(np.tile(per_item_sign, len(order)))

        block([0], [1.0])  # root height
        block([0], [1.0, 1.0, -1.0])  # gravity in the pelvis frame
        block([b - 1 for b in bodies[1:]], [1.0, -1.0, 1.0])  # body positions relative to the root
        block(bodies, [1.0, 1.0, -1.0, -1.0, 1.0, 1.0])  # first two columns of each body rotation
        block(bodies, [1.0, -1.0, 1.0])  # linear velocities
        block(bodies, [-1.0, 1.0, -1.0])  # angular velocities (pseudo-vectors)
        block([1, 0], [1.0])  # foot contacts (right, left)
        block(bodies, [1.0, -1.0, 1.0])  # distance to the reference bodies
        for _ in self.config.lookahead:
            block(bodies, [1.0, -1.0, 1.0])
        muscles = [self.muscles.index(_other_side(m)) for m in self.muscles]
        if self.config.muscle_observations:
            for _ in range(3):  # length, velocity, force
                block(muscles, [1.0])
        assert sum(len(i) for i in index) == self.observation_space.shape[0]  # every entry mapped once
        return np.concatenate(index), np.concatenate(sign), np.array(muscles)

    def _observation(self) -> np.ndarray:
        d, heading = self.data, self._heading()
        xpos, to_heading = self._xpos, heading.T
        root = xpos[0]
        xmat = d.xmat[self._bodies].reshape(-1, 3, 3)
        ahead = [self._ref_index(a) for a in self.config.lookahead]
        parts = [
            root[2:],
            -xmat[0, 2],  # gravity direction in the pelvis frame
            ((xpos[1:] - root) @ to_heading).ravel(),
            (heading @ xmat)[:, :, :2].ravel(),
            (self._velocity @ to_heading).ravel(),
            (d.cvel[self._bodies, :3] @ to_heading).ravel(),
            (d.sensordata[self._heel_sensors] > 0).astype(float),
            ((self.reference.xpos[self._ref_index()] - xpos) @ to_heading).ravel(),
            ((self.reference.xpos[ahead] - root) @ to_heading).ravel(),
        ]
        if self.config.muscle_observations:
            parts += [d.actuator_length / self._l0, d.actuator_velocity / self._l0,
                      d.actuator_force / self._force_scale]
        return np.concatenate(parts)

    def _reward(self) -> tuple[float, float, dict]:
        c, d = self.config, self.data
        i = self._ref_index()
        diff = self.reference.xpos[i] - self._xpos
        squared = (diff * diff).sum(axis=1)
        vdiff = self.reference.xvel[i] - self._velocity
        distance = float(np.sqrt(squared).mean())
        terms = {
            "position": math.exp(-c.k_pos * float(squared.mean())),
            "velocity": math.exp(-c.k_vel * float((vdiff * vdiff).sum(axis=1).mean())),
            "upright": min(max(float(d.xmat[self._bodies[0], 7]), 0.0), 1.0),  # pelvis y axis (up), world z
            "energy": math.exp(-c.k_energy * float(d.act @ d.act)),
        }
        reward = (c.w_pos * terms["position"] + c.w_vel * terms["velocity"] + c.w_upright * terms["upright"]
                  + c.w_energy * terms["energy"])
        return distance, float(reward), terms

    def _info(self, distance: float, terms: dict | None = None) -> dict:
        return {"tracking_error": distance, "reference_time": float(self.reference.time[self._ref_index()]),
                **({f"reward_{k}": v for k, v in terms.items()} if terms else {})}


def _other_side(name: str) -> str:
    """``femur_r`` -> ``femur_l`` and back; names without a side are their own mirror image."""
    if name.endswith("_r"):
        return name[:-2] + "_l"
    if name.endswith("_l"):
        return name[:-2] + "_r"
    return name

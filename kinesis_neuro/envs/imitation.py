"""KINESIS-style motion-imitation environment for the muscle-driven MyoLegs model (Gymnasium API).

The policy sees proprioception (root height and tilt, body positions, rotations and velocities in
the heading frame, foot contacts, optionally muscle length/velocity/force) and the task (distance
to the reference bodies now and their positions a few control steps ahead). Reward: position and
velocity tracking kernels, an upright term and an effort term (:func:`step_rewards`, the one place every
term is computed, for this environment and the vectorised one). An episode ends early when the mean (or,
with ``termination="any"``, the largest) tracked-body distance to the reference exceeds
``termination_distance``.

The defaults are the settings the bundled policy ``policies/myolegs-walk`` was trained in;
:meth:`ImitationConfig.kinesis` switches on the KINESIS-aligned ones (:data:`KINESIS_SETTINGS`). With
``clips`` the environment imitates a library of clips (:mod:`kinesis_neuro.motion_library`), one per episode.
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
KERNEL_AVERAGES = ("sum", "mean")
EFFORTS = ("activation-squared", "l1-l2")
EFFORT_WEIGHTINGS = ("uniform", "force")
TERMINATIONS = ("mean", "any")

# KINESIS (Simos et al. 2025; github.com/amathislab/Kinesis, src/env/myolegs_im.py and myolegs_env.py): kernels on
# the mean over x/y/z, an L1+L2 effort averaged over the physics substeps, the computed muscle command sent as
# excitation through MuJoCo's activation dynamics, termination when any tracked body strays, toe contacts observed
KINESIS_SETTINGS = {"kernel_average": "mean", "effort": "l1-l2", "activation_dynamics": True,
                    "termination": "any", "toe_contact": True}


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
    # tracking kernels on the squared distance summed over x/y/z ("sum") or averaged ("mean", KINESIS: 3x flatter)
    kernel_average: str = "sum"
    # "activation-squared": w_energy exp(-k_energy sum(act^2)), act after the control step's last substep;
    # "l1-l2": w_effort exp(-k_effort e), e = sum_j s_j (|u_j| + u_j^2) averaged over the control step's substeps,
    # u the excitations sent, s_j = 1/80 ("uniform": mean |u| + mean u^2) or muscle j's share of the summed
    # max isometric force ("force")
    effort: str = "activation-squared"
    effort_weighting: str = "uniform"
    # k_effort 3, w_effort 0.6: a marginal cost of 1.8 exp(-3 e) per unit of effort, more than stiffening buys.
    # Measured with the bundled policy, 10 episodes of 10 s (reset seeds 0-9), every target length shortened
    # (action - 0.1): uniform effort 0.263 -> 0.313 and tracking terms +0.020 per step; per-step reward
    # +0.0147 +- 0.0040 (s.e. over episodes) with the default energy term, -0.0184 +- 0.0042 with this term
    # instead (force-weighted effort: -0.0152); with the "mean" kernels +0.0017 and -0.0313
    k_effort: float = 3.0
    w_effort: float = 0.6
    # target-length mode: the computed command is the excitation (d.ctrl) and MuJoCo integrates the activation
    # with the muscles' own dynamics (KINESIS), instead of being written into the activation directly; direct
    # mode always goes through the activation dynamics. Either mode: activations kept in [0, 1] (MuJoCo's
    # actlimited; its Euler step at 150 Hz overshoots to ~1.07 from rest, faster than the 5 ms rise time)
    activation_dynamics: bool = False
    termination: str = "mean"  # "mean" tracked-body distance or "any" body farther than termination_distance
    toe_contact: bool = False  # observe the toes' contact (right, left), appended at the very end
    # names of motion-library clips (kinesis_neuro.motion_library.CLIPS) imitated, one per episode; empty: the
    # single reference built from motion, grf, half_cycle and on_floor
    clips: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def kinesis(cls, **overrides) -> ImitationConfig:
        """The KINESIS-aligned settings (:data:`KINESIS_SETTINGS`), ``overrides`` on top."""
        return cls(**{**KINESIS_SETTINGS, **overrides})


class MyoLegsImitationEnv(gym.Env):
    """Imitate a reference walk (or, with ``clips``, one clip of a motion library per episode) with 80 MyoLegs
    muscles; actions in [-1, 1]^80. :attr:`clip_names` lists the clips, :attr:`n_start_phases` how many start
    rows each offers; infos carry the episode's ``clip`` index."""

    metadata = {"render_modes": []}

    def __init__(self, config: ImitationConfig | None = None, **overrides):
        self.config = config = config or ImitationConfig(**overrides)
        for name, allowed in (("control_mode", CONTROL_MODES), ("kernel_average", KERNEL_AVERAGES),
                              ("effort", EFFORTS), ("effort_weighting", EFFORT_WEIGHTINGS),
                              ("termination", TERMINATIONS)):
            if getattr(config, name) not in allowed:
                raise KinesisNeuroError(f"{name} must be one of {allowed}, got {getattr(config, name)!r}")
        self.frame_skip = int(round(config.sim_rate / config.control_rate))
        self.model = mdl.load_model(timestep=1.0 / config.sim_rate)
        if config.activation_dynamics:
            self.model.actuator_actlimited[:] = 1
            self.model.actuator_actrange[:] = (0.0, 1.0)
        self.data = mujoco.MjData(self.model)
        self.muscles = mdl.muscle_names(self.model)
        self._f_max = self.model.actuator_gainprm[:, 2].copy()
        self._mask, self._factor = np.ones(self.model.nu), np.ones(self.model.nu)
        self.set_ablation(config.ablate)
        self.set_weakness(config.weaken)
        self.clip_names = tuple(config.clips) or (config.motion,)
        if config.clips:
            from kinesis_neuro import motion_library

            if len(set(self.clip_names)) != len(self.clip_names):
                raise KinesisNeuroError(f"clips must be distinct, got {list(self.clip_names)}")
            self.reference = ReferenceTable.concatenate([ReferenceTable(
                self.model, motion_library.reference_motion(name, duration=config.episode_seconds + 1.0,
                                                            model=self.model, data_dir=config.data_dir),
                config.sim_rate) for name in self.clip_names])
        else:
            reference = walking_reference(config.motion, grf=config.grf, half_cycle=config.half_cycle,
                                          duration=config.episode_seconds + 1.0, on_floor=config.on_floor,
                                          model=self.model, data_dir=config.data_dir)
            self.reference = ReferenceTable(self.model, reference, config.sim_rate)
        self.max_steps = int(round(config.episode_seconds * config.control_rate))
        self.n_start_phases = self._start_phases()
        self._clip_weights = np.full(len(self.clip_names), 1.0 / len(self.clip_names))
        self._bodies = self.reference.bodies
        # touch sensors (right, left): hindfoot (calcaneus; the policy observes these) and toes
        self._heel_sensors = [self.model.sensor(f"{s}_foot").id for s in ("r", "l")]
        self._toe_sensors = [self.model.sensor(f"{s}_toes").id for s in ("r", "l")]
        self._length_range = self.model.actuator_lengthrange.copy()
        self._length_centre = self._length_range.mean(axis=1)
        self._l0 = (self._length_range[:, 1] - self._length_range[:, 0]) / (
            self.model.actuator_gainprm[:, 1] - self.model.actuator_gainprm[:, 0])
        self._effort_share = (self._f_max / self._f_max.sum() if config.effort_weighting == "force"
                              else np.full(self.model.nu, 1.0 / self.model.nu))
        # the excitations of the last control step's substeps (one row in direct mode: constant over the step)
        self._substeps = np.zeros((1 if config.control_mode == "direct" else self.frame_skip, self.model.nu))
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
        self._clip = 0
        self._limit = self.max_steps

    # -- the reference clips -------------------------------------------------------------------
    def _start_phases(self) -> np.ndarray:
        """Per clip, how many start rows an episode may begin at: the episode and its lookahead stay inside
        the clip. Periodic clips: the rows of one stride (as far as the clip allows a whole episode);
        one-off clips: every row that leaves a whole episode, or only the first where the clip is shorter
        than an episode (which then ends with the clip)."""
        c, ref, out = self.config, self.reference, []
        needed = (self.max_steps + max(c.lookahead) + 1) * self.frame_skip
        for name, length, period, periodic in zip(self.clip_names, ref.lengths, ref.periods, ref.periodic):
            if periodic:
                n = min(int(period * c.sim_rate), int(length) - needed)
                if n < 1:
                    raise KinesisNeuroError(f"the reference motion {name!r} is shorter than an episode")
            else:
                n = max(int(length) - needed, 1)
                if self._steps_left(int(length), 0) < 1:
                    raise KinesisNeuroError(f"clip {name!r} ({length / c.sim_rate:.2f} s) is shorter than the "
                                            f"lookahead of {max(c.lookahead)} control steps")
            out.append(n)
        return np.array(out, np.int64)

    def _steps_left(self, length: int, start: int) -> int:
        """Control steps an episode starting at row ``start`` of a clip of ``length`` rows can take with its
        lookahead inside the clip."""
        return (length - 1 - start) // self.frame_skip - max(self.config.lookahead)

    def _episode_limit(self, clip: int, start: int) -> int:
        """Steps before truncation of an episode starting at table row ``start`` in ``clip``: the episode's
        length or what the clip has left, whichever is shorter."""
        ref = self.reference
        return min(self.max_steps, self._steps_left(int(ref.lengths[clip]), start - int(ref.offsets[clip])))

    @property
    def clip(self) -> int:
        """Index (in :attr:`clip_names`) of the clip the current episode imitates."""
        return self._clip

    @property
    def clip_weights(self) -> np.ndarray:
        return self._clip_weights.copy()

    def set_clip_weights(self, weights) -> None:
        """Probabilities of the clips at reset: one weight >= 0 per clip (a sequence in :attr:`clip_names`
        order, or a mapping name -> weight, missing names 0), normalised to sum 1."""
        names = self.clip_names
        if isinstance(weights, dict):
            unknown = sorted(set(weights) - set(names))
            if unknown:
                raise KinesisNeuroError(f"unknown clips {unknown}; clips: {list(names)}")
            weights = [weights.get(name, 0.0) for name in names]
        w = np.asarray(weights, dtype=float).reshape(-1)
        if len(w) != len(names) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise KinesisNeuroError(f"clip weights must be {len(names)} finite values >= 0 with a positive sum, "
                                    f"got {list(np.atleast_1d(weights))}")
        self._clip_weights = w / w.sum()

    def _clip_index(self, clip) -> int:
        if isinstance(clip, str):
            if clip not in self.clip_names:
                raise KinesisNeuroError(f"unknown clip {clip!r}; clips: {list(self.clip_names)}")
            return self.clip_names.index(clip)
        if not (isinstance(clip, (int, np.integer)) and 0 <= clip < len(self.clip_names)):
            raise KinesisNeuroError(f"clip must be a name or an index below {len(self.clip_names)}, got {clip!r}")
        return int(clip)

    def draw_episode(self, rng: np.random.Generator, options: dict) -> tuple[int, int, int]:
        """``(clip, start row in the table, steps before truncation)`` of a new episode: the clip drawn with
        the clip weights (a library only) unless ``options["clip"]`` (index or name) forces one, then a start
        phase in it unless ``options["start"]`` (row within the clip) forces one. The draws are made either
        way, so forcing does not shift the random stream."""
        clip = int(rng.choice(len(self.clip_names), p=self._clip_weights)) if self.config.clips else 0
        if options.get("clip") is not None:
            clip = self._clip_index(options["clip"])
        start = int(rng.integers(self.n_start_phases[clip]))
        if "start" in options:
            start = int(options["start"])
            if not (start >= 0 and self._steps_left(int(self.reference.lengths[clip]), start) >= 1):
                raise KinesisNeuroError(f"start row {start} leaves no control step in clip "
                                        f"{self.clip_names[clip]!r} ({self.reference.lengths[clip]} rows)")
        start += int(self.reference.offsets[clip])
        return clip, start, self._episode_limit(clip, start)

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
        """Everything the next step depends on: MuJoCo integration state, episode position (clip, start
        row, step), clip weights, RNG."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.zeros(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, physics, spec)
        return {"physics": physics, "start": self._start, "step": self._step, "clip": self._clip,
                "clip_weights": self._clip_weights.tolist(), "rng": self.np_random.bit_generator.state}

    @state.setter
    def state(self, value: dict) -> None:
        mujoco.mj_setState(self.model, self.data, np.asarray(value["physics"], dtype=float),
                           mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(self.model, self.data)
        self._sense()
        self._start, self._step = int(value["start"]), int(value["step"])
        self._clip = self._clip_index(int(value.get("clip", 0)))
        self._limit = self._episode_limit(self._clip, self._start)
        if "clip_weights" in value:
            self.set_clip_weights(value["clip_weights"])
        self.np_random.bit_generator.state = value["rng"]

    # -- Gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start at a reference frame: of the clip ``options["clip"]`` (index or name; else drawn with the clip
        weights), at row ``options["start"]`` of it (else a random phase; see :meth:`draw_episode`).
        ``options["start_noise"]`` (default 0): std of Gaussian noise added to every start qpos and qvel entry,
        in their own units (m, rad, m/s, rad/s), drawn from ``numpy.random.default_rng(options["noise_seed"])``
        (default 0); it stands in for the last-bit differences another CPU makes in a chaotic rollout."""
        super().reset(seed=seed)
        options = options or {}
        self._clip, self._start, self._limit = self.draw_episode(self.np_random, options)
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
        c, d = self.config, self.data
        action = np.clip(np.asarray(action, dtype=float), -1.0, 1.0)
        offset = None if self.activation_perturbation is None else self.activation_perturbation(self)
        if c.control_mode == "direct":
            self._excitation = self._perturbed(0.5 * (action + 1.0), offset)
            d.ctrl[:] = self._substeps[0] = self._excitation
            mujoco.mj_step(self.model, d, nstep=self.frame_skip)
        else:
            target = self.target_length(action)
            for s in range(self.frame_skip):
                mujoco.mj_step1(self.model, d)
                self._excitation = self._perturbed(self._target_length_activation(target), offset)
                if not c.activation_dynamics:
                    d.act[:] = self._excitation
                d.ctrl[:] = self._substeps[s] = self._excitation
                mujoco.mj_step2(self.model, d)
        self._step += 1
        self._sense()
        distance, farthest, reward, terms = self._reward()
        self.last_tracking_error = distance
        error = farthest if c.termination == "any" else distance
        terminated = bool(error > c.termination_distance or not np.isfinite(d.qpos).all())
        truncated = self._step >= self._limit
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
        act = d.act.copy()
        d.act[:] = 0.0  # MuJoCo's own actuation at activation 0 and 1
        mujoco.mj_fwdActuation(self.model, d)
        bias = d.actuator_force.copy()
        d.act[:] = 1.0
        mujoco.mj_fwdActuation(self.model, d)
        gain = d.actuator_force - bias
        d.act[:] = act
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
        return size + (3 * self.model.nu if self.config.muscle_observations else 0) + 2 * self.config.toe_contact

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
        if self.config.toe_contact:
            block([1, 0], [1.0])  # toe contacts (right, left)
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
        if self.config.toe_contact:
            parts.append((d.sensordata[self._toe_sensors] > 0).astype(float))
        return np.concatenate(parts)

    def _reward(self) -> tuple[float, float, float, dict]:
        """``(mean and largest tracked-body distance in m, reward, reward terms)`` of the current state."""
        i, d = self._ref_index(), self.data
        distance, farthest, reward, terms = step_rewards(
            self.config, (self.reference.xpos[i] - self._xpos)[None], (self.reference.xvel[i] - self._velocity)[None],
            [float(d.xmat[self._bodies[0], 7])], [d.act], self._substeps[None], self._effort_share)
        return float(distance[0]), float(farthest[0]), reward[0], {k: v[0] for k, v in terms.items()}

    def _info(self, distance: float, terms: dict | None = None) -> dict:
        return {"tracking_error": distance, "reference_time": float(self.reference.time[self._ref_index()]),
                "clip": self._clip, **({f"reward_{k}": v for k, v in terms.items()} if terms else {})}


def step_rewards(config: ImitationConfig, diff: np.ndarray, vdiff: np.ndarray, upright, act, excitation: np.ndarray,
                 share: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float], dict[str, list[float]]]:
    """Rewards of ``n`` environments after a control step: every reward term, for the single and the
    vectorised environment (which passes a batch; the single one a batch of one, so both do the same
    floating-point operations).

    ``diff``, ``vdiff`` (n, bodies, 3): reference minus simulated tracked-body positions (m) and linear
    velocities (m/s); ``upright`` (n): world z component of the pelvis' up axis; ``act``: n activation vectors
    (effort ``"activation-squared"``); ``excitation`` (n, substeps, muscles): the excitations sent at every
    substep of the step (effort ``"l1-l2"``); ``share`` (muscles): effort weights summing to 1.
    Returns the mean and the largest tracked-body distance (m, arrays), the rewards and the terms
    (``position``, ``velocity``, ``upright`` and ``energy`` or ``effort``, each a list over environments)."""
    c = config
    squared = (diff * diff).sum(axis=2)
    body_distance = np.sqrt(squared)
    distance, farthest = body_distance.mean(axis=1), body_distance.max(axis=1)
    position, velocity = squared.mean(axis=1), (vdiff * vdiff).sum(axis=2).mean(axis=1)
    if c.kernel_average == "mean":
        position, velocity = position / 3.0, velocity / 3.0
    if c.effort == "l1-l2":
        effort = ((np.abs(excitation) + excitation * excitation) * share).sum(axis=2).mean(axis=1).tolist()
        name, k_effort, w_effort = "effort", c.k_effort, c.w_effort
    else:
        effort = [float(a @ a) for a in act]
        name, k_effort, w_effort = "energy", c.k_energy, c.w_energy
    terms = {"position": [math.exp(-c.k_pos * p) for p in position.tolist()],
             "velocity": [math.exp(-c.k_vel * v) for v in velocity.tolist()],
             "upright": [min(max(float(u), 0.0), 1.0) for u in upright],
             name: [math.exp(-k_effort * e) for e in effort]}
    rewards = [c.w_pos * p + c.w_vel * v + c.w_upright * u + w_effort * e
               for p, v, u, e in zip(*terms.values())]
    return distance, farthest, rewards, terms


def _other_side(name: str) -> str:
    """``femur_r`` -> ``femur_l`` and back; names without a side are their own mirror image."""
    if name.endswith("_r"):
        return name[:-2] + "_l"
    if name.endswith("_l"):
        return name[:-2] + "_r"
    return name

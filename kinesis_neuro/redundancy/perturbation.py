"""Closed-loop null-space perturbations: how much redundant activation change a policy absorbs.

Each episode is run three times from the same start (deterministic policy actions): unperturbed,
with a *null-space* activation offset and with a *random* offset of the same norm. At the start of
every control step the offset is drawn anew at the current state, held over the step's substeps and
added to the muscle activations (``target-length`` control; in ``direct`` control it is added to the
excitations), kept inside [0, 1]. The null offset lies in the null space of the activation-to-torque
map ``A`` of the leg joints at that state (projected into the [0, 1] box by alternating projections,
see :func:`kinesis_neuro.redundancy.nullspace.perturbation_test`), so it leaves the joint torques
unchanged at the moment it is applied; the random one, scaled to the norm the null one has at that
state, does not. The policy then reacts to whatever
the offsets did. Deviation = distance of the perturbed run from the unperturbed one over their
common steps: joint-angle RMSE (rad) and mean tracked-body distance (m).

In target-length control the runs go up to :data:`BATCH` at a time through
:func:`kinesis_neuro.rollout.run_episodes` in a :class:`~kinesis_neuro.envs.vector.MyoLegsVectorEnv` on its numpy
backend, whose per-substep hook adds the offsets (clipped and masked as the single environment's
``activation_perturbation`` does); each offset is drawn right after the step before, at the state the next step
starts from, as the single environment draws it at the start of its step. Each run is bit for bit the
single-environment run (``tests/test_perturbation.py``). In direct control the runs go one after another through
a single :class:`~kinesis_neuro.envs.imitation.MyoLegsImitationEnv`: the vectorised direct-control step writes the
excitations into ``ctrl`` for a whole ``mj_step`` and has no hook to add an offset to them.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from kinesis_neuro.envs import ImitationConfig, MyoLegsImitationEnv
from kinesis_neuro.envs.vector import MyoLegsVectorEnv
from kinesis_neuro.errors import ProcessingError, require_positive
from kinesis_neuro.redundancy.nullspace import _JointMap, _null_perturbation, _random_perturbation, subspaces
from kinesis_neuro.static_optimisation import _leg_map, muscle_state

KINDS = ("null", "random")
BATCH = 32  # runs stepped together (target-length control)


class _Offsets:
    """The per-control-step activation offsets of one run, and the torque changes they caused."""

    def __init__(self, kind: str, norm: float, rng: np.random.Generator, joints: _JointMap):
        self.kind, self.norm, self.rng, self.joints = kind, norm, rng, joints
        self.torque_change, self.size = [], []

    def __call__(self, env) -> np.ndarray:
        state = muscle_state(env.model, env.data)  # position stages only: the step recomputes them
        A = _leg_map(state, self.joints.jacobian(env.data.qpos))[0]
        a = env.data.act.copy()
        d = _null_perturbation(subspaces(A)[2], a, self.norm, self.rng, max_iterations=1000)[0]
        if self.kind == "random":  # the norm the null step has at this state (box clipping shrinks it)
            d = _random_perturbation(a, np.linalg.norm(d), self.rng)
        self.torque_change.append(float(np.linalg.norm(A @ d)))
        self.size.append(float(np.linalg.norm(d)))
        return d


def _run(env, policy, seed: int, joints: _JointMap, offsets: _Offsets | None) -> dict:
    """One run in a single environment."""
    env.activation_perturbation = offsets
    try:
        obs, _ = env.reset(seed=seed)
        angles, bodies, terminated, done = [], [], False, False
        while not done:
            obs, _, terminated, truncated, _ = env.step(policy.act(obs))
            done = terminated or truncated
            angles.append(env.data.qpos[joints.qpos_index].copy())
            bodies.append(env.data.xpos[env.reference.bodies].copy())
    finally:
        env.activation_perturbation = None
    return {"angles": np.asarray(angles), "bodies": np.asarray(bodies), "fell": terminated,
            "duration": len(angles) / env.config.control_rate}


def _run_batched(env, policy, runs: list[tuple[int, _Offsets | None]], joints: _JointMap,
                 progress: bool = False) -> list[dict]:
    """The runs ``(seed, offsets)``, ``env.num_envs`` at a time in the vectorised environment ``env`` (target-length
    control, numpy backend), each as :func:`_run` gives it in a single environment."""
    from kinesis_neuro.rollout import run_episodes

    mask = env.template._mask  # silenced muscles, as the single environment's _perturbed applies it
    owner: list[_Offsets | None] = [None] * env.num_envs  # per slot: the offsets of the run it holds
    offset: list[np.ndarray | None] = [None] * env.num_envs  # per slot: the offset of the coming step
    angles, bodies = [[] for _ in runs], [[] for _ in runs]

    def hook(indices, activation):
        for row, i in enumerate(indices):
            if offset[i] is not None:
                activation[row] = np.clip(activation[row] + offset[i], 0.0, 1.0) * mask

    def on_reset(r, view):
        owner[view.i] = runs[r][1]
        offset[view.i] = None if owner[view.i] is None else owner[view.i](view)

    def on_step(r, view):
        angles[r].append(view.data.qpos[joints.qpos_index].copy())
        bodies[r].append(view.data.xpos[view.reference.bodies].copy())
        offset[view.i] = None if owner[view.i] is None else owner[view.i](view)  # before the next step

    def on_end(r, view):
        if owner[view.i] is not None:  # the offset drawn for a step that does not come
            owner[view.i].torque_change.pop()
            owner[view.i].size.pop()

    env._substep_hook = hook
    try:
        results = run_episodes(policy, env.config, [s for s, _ in runs], batch=env.num_envs, env=env,
                               on_reset=on_reset, on_step=on_step, on_end=on_end, progress=progress)
    finally:
        env._substep_hook = None
    return [{"angles": np.asarray(a), "bodies": np.asarray(b), "fell": result["terminated"],
             "duration": len(a) / env.config.control_rate} for a, b, result in zip(angles, bodies, results)]


def closed_loop_perturbation(policy, *, episodes: int = 5, norm: float = 0.05, seed: int = 0,
                             episode_seconds: float | None = 2.0, progress: bool = True,
                             **env_overrides) -> xr.Dataset:
    """Null-space vs random activation perturbations (Euclidean norm ``norm``, units 1) during
    ``episodes`` seeded rollouts of ``policy`` (episodes ``seed + k``, at most ``episode_seconds`` s).

    Returns a Dataset over ``(episode, perturbation)``: ``joint_deviation`` (rad), ``body_deviation``
    (m), ``torque_change`` (mean |A d| when applied, N m), ``applied_norm`` (mean |d|), ``duration``
    (s) and ``fell``, plus the unperturbed ``baseline_duration``; attrs hold the means and the ratio
    null / random of both deviations.
    """
    from tqdm.auto import tqdm

    require_positive(episodes=episodes, norm=norm, episode_seconds=episode_seconds)

    if not 0 < norm <= 0.5:
        raise ProcessingError(f"norm must lie in (0, 0.5], got {norm}")
    if episode_seconds is not None:
        env_overrides["episode_seconds"] = episode_seconds
    config = ImitationConfig(**{**policy.env_config, **env_overrides})
    per_episode = 1 + len(KINDS)  # the unperturbed run, then one per kind
    batched = config.control_mode == "target-length"
    env = MyoLegsVectorEnv(min(per_episode * episodes, BATCH), config, autoreset=False, backend="numpy") \
        if batched else MyoLegsImitationEnv(config)
    joints = _JointMap(env.model)
    runs = [(seed + k, None if j is None else _Offsets(KINDS[j], norm, np.random.default_rng([seed, k, j]), joints))
            for k in range(episodes) for j in (None, *range(len(KINDS)))]
    if batched:
        results = _run_batched(env, policy, runs, joints, progress)
    else:
        results = [_run(env, policy, s, joints, o) for s, o in tqdm(runs, desc="perturbed runs", disable=not progress)]
    shape = (episodes, len(KINDS))
    out = {k: np.zeros(shape) for k in ("joint_deviation", "body_deviation", "torque_change", "applied_norm",
                                       "duration")}
    fell, baseline = np.zeros(shape, bool), np.zeros(episodes)
    for k in range(episodes):
        intact = results[per_episode * k]
        baseline[k] = intact["duration"]
        for j in range(len(KINDS)):
            run, offsets = results[per_episode * k + 1 + j], runs[per_episode * k + 1 + j][1]
            n = min(len(run["angles"]), len(intact["angles"]))
            out["joint_deviation"][k, j] = np.sqrt(np.mean((run["angles"][:n] - intact["angles"][:n]) ** 2))
            out["body_deviation"][k, j] = np.linalg.norm(run["bodies"][:n] - intact["bodies"][:n], axis=-1).mean()
            out["torque_change"][k, j] = np.mean(offsets.torque_change)
            out["applied_norm"][k, j] = np.mean(offsets.size)
            out["duration"][k, j], fell[k, j] = run["duration"], run["fell"]
    units = {"joint_deviation": ("rad", "leg joint-angle RMSE vs the unperturbed run"),
             "body_deviation": ("m", "mean tracked-body distance from the unperturbed run"),
             "torque_change": ("N m", "mean norm of the leg-torque change A d when the offset is applied"),
             "applied_norm": ("1", "mean Euclidean norm of the activation offset"),
             "duration": ("s", "episode length")}
    ds = xr.Dataset({name: (("episode", "perturbation"), out[name], {"units": u, "long_name": ln})
                     for name, (u, ln) in units.items()},
                    coords={"episode": np.arange(episodes), "perturbation": list(KINDS)})
    ds["fell"] = (("episode", "perturbation"), fell, {"long_name": "episode ended early"})
    ds["baseline_duration"] = ("episode", baseline, {"units": "s", "long_name": "unperturbed episode length"})
    means = ds[["joint_deviation", "body_deviation", "torque_change"]].mean("episode")
    ds.attrs.update(norm=norm, seed=seed, policy=str(policy.source), control_mode=env.config.control_mode,
                    **{f"{v}_{kind}": float(means[v].sel(perturbation=kind)) for v in means for kind in KINDS},
                    joint_deviation_ratio=float(means.joint_deviation.sel(perturbation="null")
                                                / means.joint_deviation.sel(perturbation="random")),
                    body_deviation_ratio=float(means.body_deviation.sel(perturbation="null")
                                               / means.body_deviation.sel(perturbation="random")))
    return ds

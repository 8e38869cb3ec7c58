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
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from kinesis_neuro.errors import ProcessingError, require_positive
from kinesis_neuro.redundancy.nullspace import _JointMap, _null_perturbation, _random_perturbation, subspaces
from kinesis_neuro.static_optimisation import _leg_map, muscle_state

KINDS = ("null", "random")


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
    env = policy.make_env(**env_overrides)
    joints = _JointMap(env.model)
    shape = (episodes, len(KINDS))
    out = {k: np.zeros(shape) for k in ("joint_deviation", "body_deviation", "torque_change", "applied_norm",
                                       "duration")}
    fell, baseline = np.zeros(shape, bool), np.zeros(episodes)
    for k in tqdm(range(episodes), desc="perturbed episodes", disable=not progress):
        intact = _run(env, policy, seed + k, joints, None)
        baseline[k] = intact["duration"]
        for j, kind in enumerate(KINDS):
            offsets = _Offsets(kind, norm, np.random.default_rng([seed, k, j]), joints)
            run = _run(env, policy, seed + k, joints, offsets)
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

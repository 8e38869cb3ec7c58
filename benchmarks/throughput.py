"""Throughput of the imitation environment and the trainer, measured side by side in one run.

    python benchmarks/throughput.py [--seconds 20]

Prints (1) control steps/s of the environment driven by a policy (default: the bundled walking
policy) on one core, next to raw ``mj_step`` throughput of the same model doing the same substeps --
the environment's run replayed from each episode's start state with its recorded activations (ratio;
goal >= 0.8), and (2) training samples/s with 1 and 2 rollout workers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from kinesis_neuro import policies  # noqa: E402
from kinesis_neuro.envs import MyoLegsImitationEnv  # noqa: E402
from kinesis_neuro.train import NumpyActor, PPOConfig, Trainer  # noqa: E402

STATE = mujoco.mjtState.mjSTATE_INTEGRATION  # everything mj_step reads: time, qpos, qvel, act, warm start, ...


def env_steps_per_s(env: MyoLegsImitationEnv, actor, seconds: float) -> tuple[float, int]:
    """Control steps/s of the environment with ``actor`` choosing every action (numpy, as the training
    rollouts do), episodes seeded 0, 1, ...; also returns how many control steps it ran."""
    steps, episode = 0, 0
    obs, _ = env.reset(seed=episode)
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        obs, _, terminated, truncated, _ = env.step(actor(obs))
        steps += 1
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=episode)
    return steps / (time.perf_counter() - started), steps


def substeps_of(env: MyoLegsImitationEnv, actor, steps: int) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """The same run again, untimed: per episode its start state and the activation of every substep."""
    episodes = []
    activation_of = env._perturbed

    def recorded(activation, offset):
        excitation = activation_of(activation, offset)
        episodes[-1][1].append(excitation)
        return excitation

    env._perturbed = recorded
    state = np.empty(mujoco.mj_stateSize(env.model, STATE))
    try:
        episode, done = 0, True
        for _ in range(steps):
            if done:
                obs, _ = env.reset(seed=episode)
                episode += 1
                mujoco.mj_getState(env.model, env.data, state, STATE)
                episodes.append((state.copy(), []))
            obs, _, terminated, truncated, _ = env.step(actor(obs))
            done = terminated or truncated
    finally:
        del env._perturbed
    return episodes


def replay_steps_per_s(env: MyoLegsImitationEnv, episodes) -> tuple[float, mujoco.MjData]:
    """Control steps/s of bare MuJoCo doing the same substeps: from each episode's start state, one
    ``mj_step`` per recorded activation (set as the environment sets it); returns the final state too."""
    model, data = env.model, mujoco.MjData(env.model)
    substeps, started = 0, time.perf_counter()
    for state, activations in episodes:
        mujoco.mj_setState(model, data, state, STATE)
        for activation in activations:
            data.act[:] = data.ctrl[:] = activation
            mujoco.mj_step(model, data)
        substeps += len(activations)
    return substeps / env.frame_skip / (time.perf_counter() - started), data


def training_samples_per_s(workers: int, updates: int = 3) -> float:
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(PPOConfig(total_steps=updates * 1024 * workers, workers=workers, rollout_steps=1024,
                                    checkpoint_every=10**6), out)
        try:
            started = time.perf_counter()
            trainer.run(progress=False)
            return updates * 1024 * workers / (time.perf_counter() - started)
        finally:
            trainer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the environment measurement")
    parser.add_argument("--policy", default="policies/myolegs-walk", help="policy folder driving the environment")
    args = parser.parse_args()
    policy = policies.load(args.policy)
    env, actor = policy.make_env(), NumpyActor(policy.agent)
    torch.set_num_threads(1)
    stepped, steps = env_steps_per_s(env, actor, args.seconds)
    raw, replayed = replay_steps_per_s(env, substeps_of(env, actor, steps))
    same = float(np.abs(replayed.qpos - env.data.qpos).max())
    print(f"environment + policy (one core):   {stepped:8.1f} control steps/s ({args.policy}, {steps} steps)")
    print(f"raw mj_step, same substeps:        {raw:8.1f} control steps/s (replay ends {same:.1e} from the env state)")
    print(f"ratio env / raw:                   {stepped / raw:8.3f}  (goal >= 0.8)")
    one, two = training_samples_per_s(1), training_samples_per_s(2)
    print(f"training, 1 worker:                {one:8.1f} samples/s")
    print(f"training, 2 workers:               {two:8.1f} samples/s  (x{two / one:.2f})")
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, mujoco {mujoco.__version__}")


if __name__ == "__main__":
    main()

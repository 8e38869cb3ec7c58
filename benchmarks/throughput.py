"""Throughput of the imitation environment and the trainer, measured side by side in one run.

    python benchmarks/throughput.py [--seconds 20]

Prints (1) control steps/s of the environment driven by a policy network on one core, next to
raw ``mj_step`` throughput of the same model doing the same substeps (ratio; goal >= 0.8), and
(2) training samples/s with 1 and 2 rollout workers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import mujoco  # noqa: E402
import torch  # noqa: E402

from kinesis_neuro.envs import ImitationConfig, MyoLegsImitationEnv  # noqa: E402
from kinesis_neuro.train import ActorCritic, NumpyActor, PPOConfig, Trainer  # noqa: E402


def raw_steps_per_s(env: MyoLegsImitationEnv, seconds: float) -> float:
    """Control steps/s of bare MuJoCo: ``frame_skip`` mj_step calls with constant controls, from
    reference states (reset to the reference whenever it falls over, as the env would)."""
    model, data = env.model, mujoco.MjData(env.model)
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        i = steps % 150
        if i == 0:
            data.qpos[:], data.qvel[:] = env.reference.qpos[0], env.reference.qvel[0]
        data.ctrl[:] = 0.3
        mujoco.mj_step(model, data, nstep=env.frame_skip)
        steps += 1
    return steps / (time.perf_counter() - started)


def env_steps_per_s(env: MyoLegsImitationEnv, seconds: float) -> float:
    """Control steps/s of the environment with a policy network choosing every action (evaluated as
    the training rollouts do, with numpy)."""
    torch.set_num_threads(1)
    policy = NumpyActor(ActorCritic(env.observation_space.shape[0], env.action_space.shape[0]))
    obs, _ = env.reset(seed=0)
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        obs, _, terminated, truncated, _ = env.step(policy(obs))
        if terminated or truncated:
            obs, _ = env.reset()
        steps += 1
    return steps / (time.perf_counter() - started)


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
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each single-core measurement")
    args = parser.parse_args()
    env = MyoLegsImitationEnv(ImitationConfig())
    raw = raw_steps_per_s(env, args.seconds)
    stepped = env_steps_per_s(env, args.seconds)
    print(f"raw mj_step x{env.frame_skip} (one core):      {raw:8.1f} control steps/s")
    print(f"environment + policy (one core):   {stepped:8.1f} control steps/s")
    print(f"ratio env / raw:                   {stepped / raw:8.3f}  (goal >= 0.8)")
    one, two = training_samples_per_s(1), training_samples_per_s(2)
    print(f"training, 1 worker:                {one:8.1f} samples/s")
    print(f"training, 2 workers:               {two:8.1f} samples/s  (x{two / one:.2f})")
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, mujoco {mujoco.__version__}")


if __name__ == "__main__":
    main()

"""Throughput of the imitation environment and the trainer, measured side by side in one run.

    python benchmarks/throughput.py [--seconds 20] [--num-envs 16] [--updates 5] [--only env,training,dask]
                                    [--previous GIT-REVISION]

Prints three ratios (``ratio`` lines), each from quantities measured in this run:

1. ``env``: control steps/s of the vectorised environment (``--num-envs`` environments in one process, as
   one rollout worker steps them) driven by a policy (default: the bundled walking policy, one batched
   evaluation per step), against raw ``mj_step`` of the same model doing the same substeps: the run
   replayed with its activations from each episode's start state. Environment and replay alternate in
   short chunks so that load from other processes hits both alike. Goal >= 0.8. The single environment
   (:class:`MyoLegsImitationEnv`, what a worker stepped before) is measured the same way for comparison.
2. ``training``: training samples/s with 2 local workers, the current trainer (``--num-envs`` environments
   per worker, overlap) against the previous configuration (``num_envs=1, overlap=False``: one environment
   per worker, learner and workers taking turns), same PPO settings as the bundled policy's run. Goal >= 2.
   With ``--previous REV``, the trainer of that git revision (``kinesis_neuro/train.py`` there, e.g. the
   commit before vectorised environments) is measured too, as it was.
3. ``dask``: training samples/s with 2 against 1 Dask workers on a LocalCluster. Goal >= 1.7.

Training rates are steady-state: samples of updates 2..U over the time from the end of update 1 to the end
of update U, the run stopped after update U as a signal would stop it (worker start-up and the first,
never-overlapped, update excluded; with overlap the workers go on collecting during update U as in a long
run; the same for every configuration). Memory: resident set size of each worker process after its run.

Samples per CPU-second (user + system time of the learner and worker processes over the same updates) are
printed next to samples/s. On a machine shared with other jobs both vary: a multi-threaded learner (no
overlap) also spends CPU time spinning while its threads wait for descheduled siblings.
The learner's work is measured too (one PPO update on a batch of 2 x 2048 samples, one thread): when the
workers and the learner share the machine's cores, training can go no faster than
``cores / (environment core-seconds + learner core-seconds)`` per sample, printed as the ceiling.
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
from kinesis_neuro.envs import ImitationConfig  # noqa: E402
from kinesis_neuro.envs.vector import MyoLegsVectorEnv  # noqa: E402
from kinesis_neuro.train import NumpyActor, PPOConfig, Trainer  # noqa: E402

STATE = mujoco.mjtState.mjSTATE_INTEGRATION  # everything mj_step reads: time, qpos, qvel, act, warm start, ...


# -- 1. environment + policy vs raw mj_step ----------------------------------------------------------------
def _physics(env: MyoLegsVectorEnv, i: int) -> np.ndarray:
    state = np.empty(mujoco.mj_stateSize(env.model, STATE))
    mujoco.mj_getState(env.model, env.datas[i], state, STATE)
    return state


def _record_chunk(env: MyoLegsVectorEnv, actor, obs: np.ndarray, steps: int) -> tuple[list, dict]:
    """The chunk again, untimed (numpy backend, exact with the C one): per control step and environment the
    start state where an episode starts, and the activation of every substep; and the start states of
    episodes that began at the chunk's last step."""
    n = env.num_envs
    record = []
    current = {}

    def hook(indices, activation):
        for k, i in enumerate(indices):
            current[int(i)][1].append(activation[k].copy())

    env._substep_hook = hook
    try:
        starts = {i: _physics(env, i) for i in range(n)}
        for _ in range(steps):
            for i in range(n):
                current[i] = (starts.get(i), [])
            obs, _, terminated, truncated, _ = env.step(actor(obs.astype(np.float32)))
            record.append([current[i] for i in range(n)])
            starts = {int(i): _physics(env, int(i)) for i in np.flatnonzero(terminated | truncated)}  # reset states
    finally:
        env._substep_hook = None
    return record, starts


def _replay(model, datas: list, record: list) -> int:
    """Raw mj_step over recorded substeps (as the environment sets activations); returns the control steps."""
    steps = 0
    for step in record:
        for d, (start, activations) in zip(datas, step):
            if start is not None:
                mujoco.mj_setState(model, d, start, STATE)
            for activation in activations:
                d.act[:] = d.ctrl[:] = activation
                mujoco.mj_step(model, d)
            steps += 1
    return steps


def single_env_ratio(policy, seconds: float) -> dict:
    """The same measurement for one :class:`MyoLegsImitationEnv` (episodes seeded 0, 1, ...), its activations
    recorded through its ``_perturbed`` hook."""
    env, actor = policy.make_env(), NumpyActor(policy.agent)
    raw = mujoco.MjData(env.model)
    physics = np.empty(mujoco.mj_stateSize(env.model, STATE))

    def start_state():
        mujoco.mj_getState(env.model, env.data, physics, STATE)
        return physics.copy()

    def run(steps, obs, episode, segments=None):
        for _ in range(steps):
            obs, _, terminated, truncated, _ = env.step(actor(obs))
            if terminated or truncated:
                episode += 1
                obs, _ = env.reset(seed=episode)
                if segments is not None:
                    segments.append((start_state(), []))
        return obs, episode

    obs, _ = env.reset(seed=0)
    episode, chunk = 0, 100
    env_time = raw_time = 0.0
    steps = raw_steps = 0
    while env_time < seconds:
        saved, saved_obs, saved_episode = env.state, obs.copy(), episode
        t0 = time.perf_counter()
        obs, episode = run(chunk, obs, episode)
        env_time += time.perf_counter() - t0
        steps += chunk
        after, after_obs, after_episode = env.state, obs.copy(), episode
        env.state = saved
        segments = [(start_state(), [])]
        def recorded(activation, offset, segments=segments, activation_of=env._perturbed):
            segments[-1][1].append(activation_of(activation, offset))
            return segments[-1][1][-1]

        env._perturbed = recorded
        try:
            run(chunk, saved_obs, saved_episode, segments)
        finally:
            del env._perturbed
        t0 = time.perf_counter()
        for state, activations in segments:
            mujoco.mj_setState(env.model, raw, state, STATE)
            for activation in activations:
                raw.act[:] = raw.ctrl[:] = activation
                mujoco.mj_step(env.model, raw)
            raw_steps += len(activations) // env.frame_skip
        raw_time += time.perf_counter() - t0
        error = float(np.abs(raw.qpos - env.data.qpos).max())
        env.state, obs, episode = after, after_obs, after_episode
    return {"env": steps / env_time, "raw": raw_steps / raw_time, "steps": steps, "backend": "single",
            "replay_error": error}


def env_ratio(policy, num_envs: int, seconds: float, backend: str = "auto") -> dict:
    """Environment + policy vs raw mj_step, in alternating chunks of ~0.25 s each."""
    env = MyoLegsVectorEnv(num_envs, ImitationConfig(**policy.env_config), backend=backend)
    actor = NumpyActor(policy.agent)
    raw = [mujoco.MjData(env.model) for _ in range(num_envs)]
    obs, _ = env.reset(seed=list(range(num_envs)))
    started = time.perf_counter()  # calibrate the chunk length
    for _ in range(3):
        obs, *_ = env.step(actor(obs.astype(np.float32)))
    chunk = max(1, int(0.25 / ((time.perf_counter() - started) / 3)))
    env_time = raw_time = 0.0
    env_steps = raw_steps = 0
    worst = 0.0
    while env_time < seconds:
        saved, saved_obs = env.state, obs.copy()
        t0 = time.perf_counter()
        for _ in range(chunk):
            obs, *_ = env.step(actor(obs.astype(np.float32)))
        env_time += time.perf_counter() - t0
        env_steps += chunk * num_envs
        after, after_obs = env.state, obs.copy()
        env.state, replayed_obs = saved, saved_obs
        record, reset = _record_chunk(env, actor, replayed_obs, chunk)
        t0 = time.perf_counter()
        raw_steps += _replay(env.model, raw, record)
        raw_time += time.perf_counter() - t0
        for i, state in reset.items():  # episodes that ended at the last step: the environment reset them
            mujoco.mj_setState(env.model, raw[i], state, STATE)
            mujoco.mj_forward(env.model, raw[i])
        worst = max(worst, max(float(np.abs(d.qpos - e.qpos).max()) for d, e in zip(raw, env.datas)))
        env.state, obs = after, after_obs
    return {"env": env_steps / env_time, "raw": raw_steps / raw_time, "steps": env_steps, "backend": env.backend,
            "replay_error": worst}


# -- 2. and 3. training samples/s ----------------------------------------------------------------------------
def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def previous_trainer(revision: str):
    """The ``kinesis_neuro/train.py`` of a git revision, importable (worker processes too) as a module."""
    import subprocess
    import sys

    source = subprocess.run(["git", "show", f"{revision}:kinesis_neuro/train.py"], capture_output=True, text=True,
                            check=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout
    folder = tempfile.mkdtemp(prefix="kinesis-neuro-previous-")
    with open(os.path.join(folder, "kn_previous_train.py"), "w") as fh:
        fh.write(source)
    sys.path.insert(0, folder)
    import kn_previous_train

    return kn_previous_train


def training_rate(updates: int, scheduler=None, module=None, **settings) -> tuple[float, float, list[float]]:
    """Steady-state samples/s of ``updates`` PPO updates (bundled policy's settings plus ``settings``), samples
    per CPU-second of the learner and worker processes together over the same updates, and the workers'
    memory (MB RSS); ``module``: another trainer module (``previous_trainer``)."""
    import psutil

    config_class, trainer_class = (PPOConfig, Trainer) if module is None else (module.PPOConfig, module.Trainer)
    config = config_class(total_steps=10**9, checkpoint_every=10**6, env={"motion": "moco-walk"}, **settings)
    with tempfile.TemporaryDirectory() as out:
        trainer = trainer_class(config, out, **({} if scheduler is None else {"scheduler": scheduler}))
        try:
            if scheduler is None:
                pids = [p.pid for p in trainer.workers.processes]
            else:
                pids = list(trainer.workers.client.run(os.getpid).values())
            processes = [psutil.Process()] + [psutil.Process(pid) for pid in pids]
            marks = []  # (wall, CPU seconds of all processes) at the end of every update
            learn = trainer.learn

            def timed_learn(batch):
                stats = learn(batch)
                marks.append((time.time(), sum(sum(p.cpu_times()[:2]) for p in processes)))
                trainer.stop_requested = len(marks) == updates  # stop as a signal would: every update steady
                return stats

            trainer.learn = timed_learn
            trainer.run(progress=False)
            if scheduler is None:
                memory = [_rss_mb(pid) for pid in pids]
            else:
                rss = trainer.workers.client.run(lambda: psutil.Process().memory_info().rss / 2**20)
                memory = list(rss.values())
        finally:
            trainer.close()
    samples = (len(marks) - 1) * config.rollout_steps * config.workers
    return (samples / (marks[-1][0] - marks[0][0]), samples / (marks[-1][1] - marks[0][1]), memory)


def learner_seconds(samples: int = 4096, repeats: int = 2) -> float:
    """Seconds of one PPO update (default settings, every epoch: no KL stop) on ``samples`` samples, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = float("inf")
        for _ in range(repeats):
            torch.manual_seed(0)
            learner = Trainer.__new__(Trainer)  # the learner alone: no workers, no run folder
            learner.config, learner.update, learner.global_step = PPOConfig(kl_stop=None), 0, 0
            learner._build_learner(459, 80)
            learner._mirror = (torch.arange(459), torch.ones(459), torch.arange(80))
            obs, actions = torch.randn(samples, 459), 0.3 * torch.randn(samples, 80)
            with torch.no_grad():
                logprobs = learner.agent.distribution(obs).log_prob(actions).sum(-1)
            batch = {"obs": obs, "actions": actions, "logprobs": logprobs, "advantages": torch.randn(samples),
                     "returns": torch.randn(samples), "values": torch.randn(samples),
                     "policy_version": torch.zeros(samples, dtype=torch.int64)}
            started = time.perf_counter()
            learner.learn(batch)
            best = min(best, time.perf_counter() - started)
        return best
    finally:
        torch.set_num_threads(threads)


def dask_rate(workers: int, updates: int, num_envs: int) -> tuple[float, float, list[float]]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        return training_rate(updates, scheduler=cluster.scheduler_address, workers=workers, num_envs=num_envs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="environment time of the environment measurement")
    parser.add_argument("--num-envs", type=int, default=16, help="environments per worker")
    parser.add_argument("--updates", type=int, default=5, help="PPO updates per training measurement")
    parser.add_argument("--policy", default="policies/myolegs-walk", help="policy folder driving the environment")
    parser.add_argument("--only", default="env,training,dask", help="which measurements (comma-separated)")
    parser.add_argument("--previous", help="git revision whose trainer to measure too (e.g. the commit before "
                                           "vectorised environments)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    torch.set_num_threads(1)
    cores = os.cpu_count() or 1
    vector = None
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}, "
          f"mujoco {mujoco.__version__}", flush=True)
    if "env" in only:
        policy = policies.load(args.policy)
        single = single_env_ratio(policy, args.seconds / 2)
        vector = env_ratio(policy, args.num_envs, args.seconds)
        for name, r in (("1 environment  ", single), (f"{args.num_envs} environments", vector)):
            print(f"env + policy, {name} ({r['backend']}): {r['env']:7.1f} control steps/s vs raw mj_step "
                  f"{r['raw']:7.1f} (same substeps, {r['steps']} steps, replay within {r['replay_error']:.0e})")
        print(f"ratio env: {vector['env'] / vector['raw']:.3f}  (vectorised, {args.num_envs} per worker; goal >= 0.8; "
              f"one environment: {single['env'] / single['raw']:.3f})", flush=True)
    if "training" in only:
        runs = {"old": ({"num_envs": 1, "overlap": False}, None), "new": ({"num_envs": args.num_envs}, None)}
        if args.previous:
            runs["previous"] = ({}, previous_trainer(args.previous))
        rates, per_cpu, memory = {name: [] for name in runs}, {name: [] for name in runs}, {}
        for _ in range(2):  # alternate, so that a change in the machine's load hits every configuration
            for name, (settings, module) in runs.items():
                rate, cpu, memory[name] = training_rate(args.updates, module=module, workers=2, **settings)
                rates[name].append(rate)
                per_cpu[name].append(cpu)
        labels = {"old": "num_envs=1, no overlap (before)", "new": f"num_envs={args.num_envs}, overlap",
                  "previous": f"previous trainer ({args.previous})"}
        for name in runs:
            print(f"training, 2 workers, {labels[name]:32s} {' '.join(f'{r:6.0f}' for r in rates[name])} samples/s, "
                  f"{' '.join(f'{r:4.0f}' for r in per_cpu[name])} per CPU-second; "
                  f"worker RSS {' '.join(f'{m:.0f}' for m in memory[name])} MB")
        new, new_cpu = sum(rates["new"]), sum(per_cpu["new"])
        print(f"ratio training: {new / sum(rates['old']):.3f}  (goal >= 2"
              + (f"; against the previous trainer: {new / sum(rates['previous']):.3f})" if args.previous else ")"),
              flush=True)
        print(f"samples per CPU-second (learner and workers together): "
              f"x{new_cpu / sum(per_cpu['old']):.3f} the num_envs=1 path"
              + (f", x{new_cpu / sum(per_cpu['previous']):.3f} the previous trainer" if args.previous else ""),
              flush=True)
    if {"training", "dask"} & only:
        learn = learner_seconds()
        print(f"learner: {learn:.2f} s per update of 4096 samples on one thread "
              f"({learn / 4096 * 1e6:.0f} us per sample, 5 epochs)")
        if vector is not None:
            per_sample = 1 / vector["env"] + learn / 4096
            print(f"ceiling on {cores} cores, 2 workers and the learner sharing them: {cores / per_sample:.0f} "
                  f"samples/s (environment {1e6 / vector['env']:.0f} + learner {learn / 4096 * 1e6:.0f} core-us per "
                  f"sample); 1 worker: {min(vector['env'], cores / per_sample):.0f}", flush=True)
    if "dask" in only:
        one, _, memory_one = dask_rate(1, args.updates, args.num_envs)
        two, _, memory_two = dask_rate(2, args.updates, args.num_envs)
        print(f"training on Dask LocalCluster, 1 worker:  {one:.0f} samples/s; worker RSS "
              f"{' '.join(f'{m:.0f}' for m in memory_one)} MB (Dask worker process, environments included)")
        print(f"training on Dask LocalCluster, 2 workers: {two:.0f} samples/s; worker RSS "
              f"{' '.join(f'{m:.0f}' for m in memory_two)} MB")
        print(f"ratio dask: {two / one:.3f}  (goal >= 1.7)", flush=True)


if __name__ == "__main__":
    main()

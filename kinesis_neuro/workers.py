"""Rollout workers on a dask.distributed cluster (the engine ``ablate`` runs on): ``kinesis-neuro train --scheduler``.

Each rollout worker is a Dask *actor*: a :class:`~kinesis_neuro.train.RolloutWorker` (a vectorised batch of
environments, its action-noise RNG) that lives in one Dask worker process for the whole run and keeps its
environments' state between updates, as a local worker process does. The learner calls its methods
(``rollout``, ``get_state``, ``set_state``) directly on that worker: the policy weights go out and the
rollout comes back without passing through the scheduler. Actors are placed one per Dask worker (round
robin if there are fewer workers than rollout workers; actors sharing a Dask worker take turns), so give
each Dask worker one thread and one core (``SLURMCluster(cores=1, processes=1)`` or ``nthreads=1``).

Rollouts do not depend on where actors run: rollout worker ``i`` seeds its environments and its action noise
from ``seed + i * num_envs`` wherever it is, so checkpoints resume on a cluster or on local processes alike.
The learner gives up one core per actor on its own machine (a LocalCluster) while the workers collect.
"""

from __future__ import annotations

import os
import socket

from kinesis_neuro.errors import KinesisNeuroError

WAIT_S = float(os.environ.get("KINESIS_NEURO_DASK_WAIT", "600"))  # for workers to join (batch queues are slow)


class DaskWorkerPool:
    """``n`` rollout workers as Dask actors on the cluster of ``scheduler`` (an address or a
    ``distributed.Client``); the interface of :class:`kinesis_neuro.train.WorkerPool`."""

    def __init__(self, scheduler, n: int, env_config: dict, seed: int, num_envs: int = 1):
        from distributed import Client

        from kinesis_neuro.train import RolloutWorker

        self._own_client = not isinstance(scheduler, Client)
        try:
            self.client = Client(scheduler, timeout=60) if self._own_client else scheduler
        except (OSError, TimeoutError) as err:
            raise KinesisNeuroError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({err})") from err
        self.actors, self._pending = [], None
        try:
            try:
                self.client.wait_for_workers(n, timeout=WAIT_S)
            except TimeoutError:
                if not self.client.scheduler_info()["workers"]:
                    raise KinesisNeuroError(f"the Dask cluster at {self.client.scheduler.address} has no workers "
                                            f"after {WAIT_S:g} s (KINESIS_NEURO_DASK_WAIT); start some "
                                            "(cluster.scale(...))") from None
            addresses = sorted(self.client.scheduler_info()["workers"])
            futures = [self.client.submit(RolloutWorker, env_config, seed + i * num_envs, num_envs, actor=True,
                                          workers=[addresses[i % len(addresses)]], pure=False) for i in range(n)]
            self.actors = [f.result() for f in futures]  # each builds its environments: a bad motion fails here
            self.mirror_maps = self.actors[0].mirror_maps().result()
            hosts = self.client.run(socket.gethostname, workers=addresses)
            here = socket.gethostname()
            self.local_workers = sum(hosts[addresses[i % len(addresses)]] == here for i in range(n))
        except BaseException:
            self.close()
            raise
        self.n_obs, self.n_act = len(self.mirror_maps[0]), len(self.mirror_maps[2])

    def start_rollout(self, weights: dict, steps: int, version: int, clip_weights=None) -> None:
        self._pending = [a.rollout(weights, steps, version, clip_weights) for a in self.actors]

    def finish_rollout(self) -> list[dict]:
        pending, self._pending = self._pending, None
        return [f.result() for f in pending]

    def get_states(self) -> list[dict]:
        return [f.result() for f in [a.get_state() for a in self.actors]]

    def set_states(self, states: list[dict]) -> None:
        for f in [a.set_state(s) for a, s in zip(self.actors, states)]:
            f.result()

    def close(self) -> None:
        if self._pending is not None:  # let the workers finish before their actors go
            for f in self._pending:
                try:
                    f.result()
                except Exception:  # noqa: BLE001, S110 - closing after a failure: the error was reported already
                    pass
            self._pending = None
        self.actors = []  # releases the actors on the workers
        if self._own_client:
            self.client.close()

"""Gymnasium environments: ``gymnasium.make("KinesisNeuro/MyoLegsImitation-v0")``."""

import gymnasium as gym

from kinesis_neuro.envs.imitation import CONTROL_MODES, KINESIS_SETTINGS, ImitationConfig, MyoLegsImitationEnv

ENV_ID = "KinesisNeuro/MyoLegsImitation-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="kinesis_neuro.envs.imitation:MyoLegsImitationEnv")

__all__ = ["CONTROL_MODES", "ENV_ID", "KINESIS_SETTINGS", "ImitationConfig", "MyoLegsImitationEnv"]

"""Muscle redundancy: null space of the activation-to-torque map, variability, effort and feasible ranges."""

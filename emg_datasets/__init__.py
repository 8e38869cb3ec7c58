"""Dataset cards (one TOML file per dataset), read by :mod:`kinesis_neuro.datasets`."""

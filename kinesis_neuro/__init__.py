"""kinesis-neuro: do the muscle activations of a simulated body look like human EMG?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kinesis-neuro")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

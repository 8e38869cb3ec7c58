"""File readers. Each returns an :class:`xarray.DataArray` built by :func:`emg_array`."""

from kinesis_neuro.io.common import emg_array, select_channels

__all__ = ["emg_array", "select_channels"]

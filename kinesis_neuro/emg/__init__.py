"""EMG: reading (:func:`read`), processing steps, presets and cycle segmentation."""

from kinesis_neuro.emg.presets import PRESETS, musclesynergies_cycles, musclesynergies_filter, process
from kinesis_neuro.emg.processing import (
    bandpass,
    envelope,
    highpass,
    history,
    lowpass,
    moving_rms,
    normalise,
    notch,
    rectify,
    remove_dc,
    resample,
)
from kinesis_neuro.emg.read import read, read_events, read_normative, source_path

__all__ = [
    "PRESETS", "bandpass", "envelope", "highpass", "history", "lowpass", "moving_rms", "musclesynergies_cycles",
    "musclesynergies_filter", "normalise", "notch", "process", "read", "read_events", "read_normative", "rectify",
    "remove_dc", "resample", "source_path",
]

"""Who hears whom: the mixing matrix of conferences and supervisor monitoring (FEATURES.md §6), sans-IO.

A mix of k participants is a k x k matrix of 0/1: row i says whose audio participant i hears (never
their own). One tick of mixing is one matrix product over the participants' 20 ms frames, clipped to
16 bits. Monitoring is a three-party mix with a fixed matrix:

- **listen**: the supervisor hears caller and agent; caller and agent hear only each other;
- **whisper**: the agent hears the caller and the supervisor; the caller hears only the agent;
- **barge**: everyone hears everyone.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

CALLER, AGENT, SUPERVISOR = 0, 1, 2


class MonitorMode(enum.Enum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


def monitor_matrix(mode: MonitorMode) -> npt.NDArray[np.int32]:
    """Rows and columns in the order caller, agent, supervisor; row = the listener."""
    hears = {
        MonitorMode.LISTEN: [[0, 1, 0], [1, 0, 0], [1, 1, 0]],
        MonitorMode.WHISPER: [[0, 1, 0], [1, 0, 1], [1, 1, 0]],
        MonitorMode.BARGE: [[0, 1, 1], [1, 0, 1], [1, 1, 0]],
    }[mode]
    return np.array(hears, dtype=np.int32)


def conference_matrix(k: int) -> npt.NDArray[np.int32]:
    """Everyone hears everyone else."""
    return np.ones((k, k), dtype=np.int32) - np.eye(k, dtype=np.int32)


def mix(matrix: npt.NDArray[np.int32], frames: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """What each participant hears: `matrix @ frames`, saturated to int16. frames: (k, samples)."""
    out = matrix @ frames.astype(np.int32)
    return np.clip(out, -32768, 32767).astype(np.int16)

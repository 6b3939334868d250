"""Simulation of a contact center: `fast` runs the real ACD router on a virtual clock."""

from .batches import Estimate
from .fast import (
    HandleDistribution,
    QueueResult,
    Scenario,
    SimAgent,
    SimulationResult,
    Traffic,
    compare_strategies,
    run_fast,
    single_queue_scenario,
)

__all__ = [
    "Estimate",
    "HandleDistribution",
    "QueueResult",
    "Scenario",
    "SimAgent",
    "SimulationResult",
    "Traffic",
    "compare_strategies",
    "run_fast",
    "single_queue_scenario",
]

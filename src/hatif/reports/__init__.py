"""Reports and KPIs (FEATURES.md §7); `staffing` holds the Erlang B/C/A math."""

from .staffing import (
    ErlangA,
    agents_for_service_level,
    average_speed_of_answer,
    erlang_a,
    erlang_b,
    erlang_c,
    occupancy,
    service_level,
)

__all__ = [
    "ErlangA",
    "agents_for_service_level",
    "average_speed_of_answer",
    "erlang_a",
    "erlang_b",
    "erlang_c",
    "occupancy",
    "service_level",
]

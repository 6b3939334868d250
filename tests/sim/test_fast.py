"""The fast simulator against queueing theory (Erlang C and A), and its bookkeeping.

Tolerances. Each simulated figure comes with the half-width `hw` of its 95 % confidence interval by
batch means (20 consecutive batches of a few thousand calls; the M/M/n queues here forget their state
within a hundred or so arrivals, about 1 / (n mu (1 - sqrt(rho))^2), so batches that long are nearly
independent). A test accepts `|simulated - theory| <= 2 hw`, about four standard errors: a correct
router fails it with probability below 1e-4 whatever the seed (and the seed is fixed). So that the
check has teeth, each test also bounds `hw` itself, i.e. it proves the run was long enough to tell a
real disagreement (a wrong queue discipline moves the 20-second service level by far more).
"""

from __future__ import annotations

import math

import pytest

from hatif.acd import (
    AgentProfile,
    LanguageMode,
    OverflowRule,
    QueueConfig,
    QueueMembership,
    SendToVoicemail,
    SkillRequirement,
    Strategy,
    WidenSkills,
)
from hatif.reports.staffing import average_speed_of_answer, erlang_a, erlang_c, service_level
from hatif.sim import (
    Estimate,
    HandleDistribution,
    Scenario,
    SimAgent,
    Traffic,
    compare_strategies,
    run_fast,
    single_queue_scenario,
)


def agrees(estimate: Estimate, theory: float, max_half_width: float) -> None:
    assert estimate.half_width <= max_half_width, f"run too short to judge: {estimate}"
    assert abs(estimate.value - theory) <= 2 * estimate.half_width, f"{estimate} vs theory {theory}"


def test_service_level_and_asa_agree_with_erlang_c() -> None:
    # 20 agents, 16 Erlangs (320 calls an hour of 180 s), patient callers, longest idle: M/M/20.
    # 80,000 calls are 250 simulated hours.
    scenario = single_queue_scenario(20, 320.0, 180.0, calls=80_000, warmup_calls=1_000, answer_within=20.0)
    result = run_fast(scenario, seed=11)
    overall = result.overall
    assert overall.offered == 79_000 and overall.answered == 79_000 and overall.abandoned == 0
    agrees(overall.waited, erlang_c(20, 16.0), max_half_width=0.035)
    agrees(overall.service_level, service_level(20, 16.0, 180.0, 20.0), max_half_width=0.03)
    # The mean wait is far noisier than the shares: a few long congestion episodes make most of it.
    asa = average_speed_of_answer(20, 16.0, 180.0)
    agrees(overall.asa, asa, max_half_width=0.35 * asa)
    # Occupancy = a / n: its error comes from the arrivals and handle times, about 0.5 % (1 sd).
    assert result.occupancy == pytest.approx(16 / 20, abs=0.02)
    assert result.simulated_seconds > 80_000 / (320 / 3600) * 0.95


def test_abandonment_and_service_level_agree_with_erlang_a() -> None:
    # 12 agents, 10 Erlangs, exponential patience of 180 s: M/M/12+M.
    scenario = single_queue_scenario(12, 200.0, 180.0, mean_patience=180.0, calls=40_000, warmup_calls=1_000)
    result = run_fast(scenario, seed=5)
    theory = erlang_a(12, 10.0, 180.0, 180.0)
    overall = result.overall
    assert overall.abandoned > 1_000 and overall.answered + overall.abandoned == overall.offered
    agrees(overall.abandonment_rate, theory.p_abandon, max_half_width=0.01)
    agrees(overall.waited, theory.p_wait, max_half_width=0.035)
    agrees(overall.service_level, theory.service_level(20.0), max_half_width=0.03)
    agrees(overall.asa, theory.asa, max_half_width=2.0)
    assert result.occupancy == pytest.approx(theory.occupancy, abs=0.02)


def test_same_seed_same_result_other_seed_other_result() -> None:
    scenario = single_queue_scenario(5, 80.0, 200.0, calls=3_000, mean_patience=300.0)
    first = run_fast(scenario, seed=1)
    assert run_fast(scenario, seed=1) == first
    assert run_fast(scenario, seed=2).overall.service_level.value != first.overall.service_level.value


def test_strategies_compared_on_the_same_callers() -> None:
    # Identical agents and first-come-first-served calls: which agent answers cannot change any wait, so
    # every strategy must give exactly the same service level (common random numbers); only the share
    # of calls per agent differs, and fewest-calls evens it out best.
    scenario = single_queue_scenario(10, 150.0, 200.0, calls=5_000, warmup_calls=200)
    results = compare_strategies(scenario, list(Strategy), seed=3)
    assert set(results) == set(Strategy)
    baseline = results[Strategy.LONGEST_IDLE]
    spread = {}
    for strategy, result in results.items():
        assert result.overall.service_level == baseline.overall.service_level, strategy
        assert result.overall.asa == baseline.overall.asa, strategy
        assert result.occupancy == pytest.approx(baseline.occupancy, rel=1e-9)
        calls = result.calls_per_agent
        assert sum(calls.values()) == result.overall.answered
        spread[strategy] = max(calls.values()) - min(calls.values())
    assert spread[Strategy.FEWEST_CALLS] == min(spread.values())
    assert spread[Strategy.FEWEST_CALLS] < spread[Strategy.LONGEST_IDLE]


def test_wrapup_and_lognormal_handle_times_load_the_agents() -> None:
    # Occupancy counts after-call work: 8 agents, 100 calls/h of 180 s + 36 s wrap-up = 6 Erlangs of work.
    scenario = single_queue_scenario(8, 100.0, 180.0, wrapup=36.0, handle=HandleDistribution.LOGNORMAL,
                                     handle_cv=0.5, calls=15_000, warmup_calls=500)
    result = run_fast(scenario, seed=9)
    assert result.occupancy == pytest.approx(6 / 8, abs=0.02)
    assert result.overall.answered == result.overall.offered == 14_500


def test_skills_overflow_languages_and_vip_in_one_center() -> None:
    queues = (
        QueueConfig("billing", requirements=(SkillRequirement("billing", 6),),
                    overflow=(OverflowRule(30.0, WidenSkills((SkillRequirement("billing", 2),))),
                              OverflowRule(120.0, SendToVoicemail())), wrapup=10.0),
        QueueConfig("support", strategy=Strategy.BEST_SKILL_MATCH, requirements=(SkillRequirement("tech", 3),),
                    max_length=15),
    )
    traffic = (
        Traffic("billing", 60 / 3600, 240.0, mean_patience=200.0, vip_share=0.1, languages=(("en", 3), ("ar", 1))),
        Traffic("support", 90 / 3600, 300.0, handle=HandleDistribution.LOGNORMAL, handle_cv=1.5),
    )
    agents = tuple(
        SimAgent(AgentProfile(f"a{i}", {"billing": 2 + i % 8, "tech": 1 + i % 10}, frozenset({"en", "ar"})),
                 (QueueMembership("billing", i % 2), QueueMembership("support")))
        for i in range(12))
    scenario = Scenario(queues, traffic, agents, calls=8_000, answer_within=30.0, warmup_calls=300)
    progress: list[tuple[int, int]] = []
    result = run_fast(scenario, seed=21, progress=lambda done, total: progress.append((done, total)))
    for q in result.queues:
        assert q.offered == q.answered + q.abandoned + q.left, q  # every call has an outcome
        assert 0 <= q.service_level.value <= 1 and not math.isnan(q.service_level.half_width)
    billing, support = result.queue("billing"), result.queue("support")
    assert billing.offered + support.offered == result.overall.offered == 7_700
    assert billing.abandoned > 0 and support.abandoned == 0  # only billing callers are impatient
    assert 0 < result.occupancy < 1
    # Progress: steady, in order, ending with every call.
    assert progress[-1] == (8_000, 8_000) and len(progress) >= 100
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    with pytest.raises(KeyError, match="'nowhere'"):
        result.queue("nowhere")
    table = result.report().splitlines()
    assert [line.split()[0] for line in table[1:4]] == ["billing", "support", "overall"]
    assert table[3].split()[1] == "7,700" and table[-1].startswith("occupancy ")


def test_calls_nobody_can_take_count_as_left() -> None:
    # Persian callers need a Persian speaker; the only agent speaks English. With patient callers the
    # simulation ends with them still waiting: they were never answered.
    queue = QueueConfig("q", language=LanguageMode.REQUIRE)
    staff = (SimAgent(AgentProfile("a", languages=frozenset({"en"})), (QueueMembership("q"),)),)
    traffic = (Traffic("q", 0.01, 100.0, languages=(("en", 1), ("fa", 1))),)
    result = run_fast(Scenario((queue,), traffic, staff, calls=400), seed=4)
    overall = result.overall
    assert overall.answered + overall.left == 400 and 150 < overall.left < 250


def test_scenario_errors_name_the_problem() -> None:
    queue = QueueConfig("q")
    with pytest.raises(ValueError, match="traffic for queue 'other'"):
        Scenario((queue,), (Traffic("other", 0.01, 100.0),), ())
    with pytest.raises(ValueError, match="warmup_calls"):
        Scenario((queue,), (Traffic("q", 0.01, 100.0),), (), calls=10, warmup_calls=10)
    with pytest.raises(ValueError, match="traffic of queue 'q': mean_patience"):
        Traffic("q", 0.01, 100.0, mean_patience=0.0)

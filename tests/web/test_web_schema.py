"""Schemathesis over the whole API v1 schema: generated requests to every operation, as an administrator of a
tenant with data, get no server error and no answer outside the schema (status, content type, headers, body), and
a request outside the schema is refused.

Schemathesis's check that every schema-valid request is accepted is left out: a name or password can fit the
schema's length and still break a rule the schema cannot say (no surrounding white space, a strong password),
and the 422 that answers it names the rule."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from people_world import World
from schemathesis import Case
from schemathesis.specs.openapi.checks import positive_data_acceptance

from hatif.web.api import PREFIX

EXAMPLES = 30


def test_every_operation_answers_within_its_schema(world: World) -> None:
    schema = schemathesis.openapi.from_asgi(f"{PREFIX}/openapi.json", world.client.app)
    headers = world.bearer("adel")
    problems: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Case) -> None:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # every operation is tried; failures listed together
            problems[operation.label] = str(exc)[:2000]
    assert operations >= 15, f"only {operations} operations in the schema"
    assert not problems, "\n\n".join(f"{label}:\n{text}" for label, text in problems.items())



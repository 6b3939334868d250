"""IVR flows (FEATURES.md §2): menus, input, language choice, rules, web lookups and routing.

- `model`: the flow schema (pydantic, frozen), `rules`: the tenant's schedules and number lists,
  `template`: `{variable}` texts and URLs;
- `validate`: load-time checks across nodes and flows (missing or unreachable nodes, unknown targets,
  loops without input), each problem located at its flow, node and field;
- `machine`: the sans-IO interpreter (`FlowMachine`: actions out, results in, time passed in);
- `runner`: `run_flow`, the asyncio shell driving the machine over a `hatif.calls.api.Channel`;
- `orders`: a small order-status web service the demo's flow looks orders up in.
"""

"""hatif.config: validation with file:line:field errors, the dial plan, tenants by domain, the demo file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatif.config import (
    Config,
    ConfigError,
    ListenAddress,
    Route,
    load_config,
    parse_config,
    parse_host_port,
)

DEMO = Path(__file__).parents[1] / "examples" / "demo.yaml"


def errors(text: str, source: str = "bad.yaml") -> list[str]:
    """The messages `parse_config` raises for `text` (which must be invalid)."""
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text).lstrip("\n"), source)
    assert str(info.value) == "\n".join(info.value.messages)
    return info.value.messages


MINIMAL = """
tenants:
  - name: default
"""


# -- errors name the file, the line and the field ---------------------------------------------------------


def test_missing_password_points_at_the_user_entry() -> None:
    assert errors("""
        tenants:
          - name: default
            users:
              - username: "1001"
                password: long-enough-1
              - username: "1002"
                display_name: Reza Karimi
        """) == ["bad.yaml:6: tenants[0].users[1].password: field required"]


def test_unknown_key_gives_its_own_line_and_a_suggestion() -> None:
    assert errors("""
        sip:
          ring_timeout: 20
          ring_timout: 30
        tenants:
          - name: default
        """) == ["bad.yaml:3: sip.ring_timout: unknown key (did you mean 'ring_timeout'?)"]


def test_unknown_top_level_key_lists_the_sections() -> None:
    (message,) = errors("""
        tenants:
          - name: default
        qeues: []
        """)
    assert message == ("bad.yaml:3: qeues: unknown key (expected one of: sip, security, media, logging, store, api, "
                       "bus, voicemail, tenants)")


def test_bad_regex_names_the_rule_and_its_line() -> None:
    (message,) = errors("""
        tenants:
          - name: default
            dialplan:
              - {match: '^1\\d{3}$', to: extension}
              - {match: '^9(\\d+$', to: extension}
        """)
    assert message.startswith("bad.yaml:5: tenants[0].dialplan[1].match: invalid regular expression '^9(\\d+$': ")
    assert "missing )" in message


def test_duplicate_extension_is_refused_at_the_second_user() -> None:
    assert errors("""
        tenants:
          - name: default
            users:
              - {username: "1001", password: amira-secret-1}
              - {username: amira, extension: "1002", password: amira-secret-2}
              - {username: "1002", password: reza-secret-22}
        """) == ["bad.yaml:6: tenants[0].users[2].extension: duplicate extension '1002' (first at users[1])"]


def test_duplicate_username_is_refused() -> None:
    assert errors("""
        tenants:
          - name: default
            users:
              - {username: amira, password: amira-secret-1}
              - {username: amira, password: amira-secret-2}
        """) == ["bad.yaml:5: tenants[0].users[1].username: duplicate username 'amira' (first at users[0])"]


def test_dialplan_target_must_exist_in_the_same_tenant() -> None:
    assert errors("""
        tenants:
          - name: default
            endpoints:
              - {name: carrier, host: 203.0.113.5}
            dialplan:
              - {match: '^9(\\d+)$', to: 'endpoint:carier', rewrite: '\\1'}
              - {match: '^0$', to: 'user:operator'}
          - name: acme
            users:
              - {username: operator, password: operator-secret}
        """) == [
        "bad.yaml:6: tenants[0].dialplan[0].to: no endpoint 'carier' in tenant 'default'",
        "bad.yaml:7: tenants[0].dialplan[1].to: no user 'operator' in tenant 'default'",
    ]


def test_yaml_syntax_error_gives_the_line() -> None:
    (message,) = errors("""
        tenants:
          - name: default
            users: [{username: "1001", password: x
        sip: {}
        """)
    assert message.startswith("bad.yaml:4: invalid YAML: ")


def test_duplicate_yaml_key_is_an_error() -> None:
    assert errors("""
        tenants:
          - name: default
        logging: {level: info}
        logging: {level: debug}
        """) == ["bad.yaml:4: logging: duplicate key (first at line 3)"]


def test_all_errors_are_reported_in_file_order() -> None:
    messages = errors("""
        sip:
          listen: ["udp:0.0.0.0:5060", "sctp:0.0.0.0:5060", "udp:::1:5060"]
          registration: {min_expires: 60, default_expires: 30}
        security:
          ban_tim: 60
        tenants:
          - name: Default
            users:
              - {username: "1001", password: short}
        """)
    assert messages == [
        "bad.yaml:2: sip.listen[1]: 'sctp:0.0.0.0:5060': unsupported transport 'sctp' (expected udp or tcp)",
        "bad.yaml:2: sip.listen[2]: 'udp:::1:5060': an IPv6 address goes in brackets, e.g. [::1]:5060",
        "bad.yaml:3: sip.registration.default_expires: must lie between min_expires (60) and max_expires (3600)",
        "bad.yaml:5: security.ban_tim: unknown key (did you mean 'ban_time'?)",
        "bad.yaml:7: tenants[0].name: 'Default': a name is lower-case letters, digits and inner dashes (up to 63)",
        "bad.yaml:9: tenants[0].users[0].password: string should have at least 8 characters",
    ]


def test_tenants_are_required_and_kept_apart() -> None:
    assert errors("sip: {}\n") == ["bad.yaml:1: tenants: field required"]
    assert errors("tenants: []\n")[0].startswith("bad.yaml:1: tenants: ")
    assert errors("""
        tenants:
          - name: default
            domains: [hatif.local]
          - name: acme
            domains: [acme.example, HATIF.local]
          - name: acme
        """) == [
        "bad.yaml:5: tenants[1].domains[1]: domain 'hatif.local' already belongs to tenant 'default'",
        "bad.yaml:6: tenants[2].name: duplicate tenant name 'acme' (first at tenants[1])",
    ]


def test_rewrite_must_fit_the_pattern() -> None:
    assert errors("""
        tenants:
          - name: default
            endpoints: [{name: carrier, host: 203.0.113.5}]
            dialplan:
              - {match: '^9(\\d+)$', to: 'endpoint:carrier', rewrite: '\\2'}
              - {match: '^8(?P<n>\\d+)$', to: 'endpoint:carrier', rewrite: '\\g<m>'}
        """) == [
        "bad.yaml:5: tenants[0].dialplan[0].rewrite: '\\2' refers to group 2, but the pattern has 1",
        "bad.yaml:6: tenants[0].dialplan[1].rewrite: '\\g<m>' refers to group 'm', which the pattern does not define",
    ]


def test_trusted_endpoint_needs_an_ip_address() -> None:
    (message,) = errors("""
        tenants:
          - name: default
            endpoints:
              - {name: carrier, host: sip.carrier.example}
        """)
    assert message.startswith("bad.yaml:4: tenants[0].endpoints[0].host: 'sip.carrier.example': a trusted endpoint")
    config = parse_config("tenants:\n  - name: default\n    endpoints:\n"
                          "      - {name: carrier, host: sip.carrier.example, trusted: false}\n")
    assert config.tenants[0].endpoints[0].host == "sip.carrier.example"


def test_line_breaks_cannot_reach_sip_headers() -> None:
    (message,) = errors("""
        sip:
          user_agent: "Hatif\\r\\nX-Evil: 1"
        tenants:
          - name: default
        """)
    assert message.startswith("bad.yaml:2: sip.user_agent: the User-Agent must not contain control characters")


def test_unreadable_input_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file"):
        load_config(missing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match=r"empty\.yaml:1: the configuration is empty"):
        load_config(empty)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"tenants: \xff\n")
    with pytest.raises(ConfigError, match=r"binary\.yaml: not UTF-8"):
        load_config(binary)
    with pytest.raises(ConfigError, match=r"<string>:1: the configuration must be a mapping"):
        parse_config("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"<string>:2: invalid YAML: could not determine a constructor"):
        parse_config("tenants:\n  - !!python/object/apply:os.system [ls]\n")


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hatif.yaml"
    path.write_text("tenants:\n  - name: default\n    users:\n      - {username: '1001'}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.messages == [f"{path}:4: tenants[0].users[0].password: field required"]


# -- values -----------------------------------------------------------------------------------------------


def test_defaults_follow_rfc_3261_and_the_security_rules() -> None:
    config = parse_config(MINIMAL)
    sip = config.sip
    assert sip.listen == (ListenAddress("udp", "0.0.0.0", 5060), ListenAddress("tcp", "0.0.0.0", 5060))
    assert (sip.timers.t1, sip.timers.t2, sip.timers.t4, sip.timers.d) == (0.5, 4.0, 5.0, 32.0)
    assert sip.user_agent.startswith("Hatif/")
    assert (sip.registration.min_expires, sip.registration.max_expires) == (60, 3600)
    assert sip.registration.max_contacts_per_user == 5
    sec = config.security
    assert (sec.auth_failure_limit, sec.auth_failure_window, sec.flood_limit, sec.flood_window) == (10, 60, 16, 2.0)
    assert (sec.ban_time, sec.secret) == (300, None)
    assert (config.logging.level, config.logging.format) == ("info", "plain")


def test_listen_addresses_are_typed() -> None:
    config = parse_config("""
sip:
  listen: ["UDP:[::1]:5070", "tcp:Example.COM:0", "udp:127.0.0.1:5060"]
tenants: [{name: default}]
""")
    assert config.sip.listen == (ListenAddress("udp", "::1", 5070), ListenAddress("tcp", "example.com", 0),
                                 ListenAddress("udp", "127.0.0.1", 5060))
    assert [str(a) for a in config.sip.listen] == ["udp:[::1]:5070", "tcp:example.com:0", "udp:127.0.0.1:5060"]
    assert parse_host_port("[2001:db8::1]:5060") == ("2001:db8::1", 5060)
    for bad in ("5060", ":5060", "host:", "host:65536", "[::1]5060", "[1.2.3.4]:5060", "bad host:5060"):
        with pytest.raises(ValueError):
            parse_host_port(bad)


@settings(max_examples=60, deadline=None)
@given(transport=st.sampled_from(["udp", "tcp"]), port=st.integers(0, 65535),
       host=st.one_of(st.ip_addresses().map(str),
                      st.from_regex(r"[a-z]([a-z0-9-]{0,9}[a-z0-9])?(\.[a-z][a-z0-9]{0,10}){0,3}", fullmatch=True)))
def test_listen_address_round_trips(transport: str, port: int, host: str) -> None:
    address = ListenAddress.parse(f"{transport}:[{host}]:{port}" if ":" in host else f"{transport}:{host}:{port}")
    assert (address.transport, address.port) == (transport, port)
    assert ListenAddress.parse(str(address)) == address


def test_users_extension_defaults_and_secrets_stay_out_of_repr() -> None:
    config = parse_config("""
security: {secret: "0123456789abcdef-very-secret"}
tenants:
  - name: default
    users:
      - {username: 1001, password: amira-secret-1, language: AR}
      - {username: reza, password: reza-secret-22}
      - {username: layla, extension: 2001, password: layla-secret-3}
""")
    users = config.tenants[0].users
    assert [(u.username, u.extension) for u in users] == [("1001", "1001"), ("reza", None), ("layla", "2001")]
    assert users[0].language == "ar"
    assert "amira-secret-1" not in repr(config)
    assert "very-secret" not in repr(config)


def test_config_is_frozen() -> None:
    config = parse_config(MINIMAL)
    with pytest.raises(pydantic.ValidationError):
        config.sip.ring_timeout = 1.0  # type: ignore[misc]
    replaced = config.with_listen((ListenAddress("udp", "127.0.0.1", 5070),))
    assert [str(a) for a in replaced.sip.listen] == ["udp:127.0.0.1:5070"]
    assert len(config.sip.listen) == 2


def test_the_configs_the_test_suite_uses_parse() -> None:
    config = parse_config("""
sip:
  listen: ["udp:127.0.0.1:5062"]
  ring_timeout: 2.0
  timers: {t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}
logging:
  level: warning
tenants:
  - name: default
    domains: [hatif.local]
    endpoints:
      - {name: uac, host: 127.0.0.1, port: 5070}
      - {name: uas, host: 127.0.0.1, port: 5071, transport: tcp}
    dialplan:
      - {match: '^2000$', to: 'endpoint:uas'}
""", "<test>")
    assert config.sip.timers.d == 1.0
    assert config.tenants[0].route("2000") == Route("endpoint", "uas", "2000")


# -- the dial plan and tenants ----------------------------------------------------------------------------

ROUTED = """
tenants:
  - name: default
    domains: [hatif.local, pbx.example.org]
    users:
      - {username: "1001", password: amira-secret-1}
      - {username: reza, extension: "1002", password: reza-secret-22}
      - {username: operator, password: operator-secret}
    endpoints:
      - {name: carrier, host: 203.0.113.5, transport: tcp}
    dialplan:
      - {match: '^1\\d{3}$', to: extension}
      - {match: '^1\\d{3}$', to: 'endpoint:carrier', rewrite: '+44\\g<0>'}
      - {match: '^0$', to: 'user:operator'}
      - {match: '^9(\\d+)$', to: 'endpoint:carrier', rewrite: '00\\1'}
      - {match: '^\\*43$', to: 'app:echo'}
  - name: acme
    domains: [acme.example]
"""


def test_route_resolution_with_rewrite() -> None:
    tenant = parse_config(ROUTED).tenants[0]
    assert tenant.route("1001") == Route("user", "1001", "1001")
    assert tenant.route("1002") == Route("user", "reza", "1002")
    assert tenant.route("1999") == Route("endpoint", "carrier", "+441999")  # no such extension: next rule
    assert tenant.route("0") == Route("user", "operator", "0")
    assert tenant.route("9442079460000") == Route("endpoint", "carrier", "00442079460000")
    assert tenant.route("*43") == Route("app", "echo", "*43")
    assert tenant.route("12") is None
    assert tenant.route("") is None


def test_tenant_for_domain() -> None:
    config = parse_config(ROUTED)
    default = config.tenants[0]
    assert config.tenant_for_domain("acme.example") is config.tenants[1]
    assert config.tenant_for_domain("ACME.example.") is config.tenants[1]
    assert config.tenant_for_domain("pbx.example.org") is default
    assert config.tenant_for_domain("192.0.2.7") is default
    assert config.tenant_for_domain("[2001:db8::1]") is default
    assert config.tenant_for_domain("elsewhere.example") is default
    no_default = parse_config("tenants:\n  - name: acme\n    domains: [acme.example]\n")
    assert no_default.tenant_for_domain("acme.example") is no_default.tenants[0]
    assert no_default.tenant_for_domain("192.0.2.7") is None


def test_demo_yaml_loads() -> None:
    config = load_config(DEMO)
    assert isinstance(config, Config)
    (tenant,) = config.tenants
    assert tenant.name == "default" and tenant.domains == ("hatif.local",)
    people = ["1001", "1002", "1003", "1004", "1005"]
    virtual = ["2001", "2002", "2003", "2004"]
    assert [u.username for u in tenant.users] == people + virtual
    assert {u.language for u in tenant.users} == {"en", "ar", "fa"}
    assert all(u.display_name for u in tenant.users)
    assert [str(a) for a in config.sip.listen] == ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]
    assert config.demo_credentials_in_use() == people + virtual
    assert tenant.route("1004") == Route("user", "1004", "1004")
    assert tenant.route("1006") is None
    assert tenant.route("*43") == Route("app", "echo", "*43")
    assert tenant.route("700") == Route("app", "flow:main", "700")
    assert tenant.route("800") == Route("app", "queue:sales", "800")
    assert {a.user for a in tenant.agents} == set(people + virtual)
    assert {q.name for q in tenant.queues} == {"sales", "support"}


def test_demo_credentials_only_for_the_demo_password() -> None:
    config = parse_config("""
tenants:
  - name: default
    users:
      - {username: "1001", password: hatif-demo}
      - {username: "1002", password: hatif-demo-not}
""")
    assert config.demo_credentials_in_use() == ["1001"]


BROKEN_FLOW = """
    tenants:
      - name: default
        users:
          - {username: "1001", password: "a-long-secret-1"}
        dialplan:
          - {match: '^700$', to: 'flow:main'}
          - {match: '^701$', to: 'flow:mian'}
        flows:
          main:
            start: menu
            nodes:
              menu:
                type: menu
                prompt: "Press 1 for sales."
                options: {1: sales}
              sales:
                type: route
                to: "user:1009"
              orphan:
                type: say
                text: "Nobody comes here."
                next: spin
              spin:
                type: say
                text: "Round and round."
                next: orphan
    """


def test_broken_flow_is_refused_naming_each_node() -> None:
    messages = errors(BROKEN_FLOW, "flows.yaml")
    text = "\n".join(messages)
    assert "flows.yaml:7: tenants[0].dialplan[1].to: no flow 'mian'" in text
    assert "flows.yaml:18: tenants[0].flows.main.nodes.sales.to: there is no user '1009'" in text
    assert "flows.yaml:19: tenants[0].flows.main.nodes.orphan: node 'orphan' cannot be reached" in text
    assert "tenants[0].flows.main.nodes.orphan: loop without input: orphan -> spin -> orphan" in text
    assert "flows.yaml:23: tenants[0].flows.main.nodes.spin: node 'spin' cannot be reached" in text


def test_serve_refuses_a_broken_flow_at_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hatif.cli import main

    path = tmp_path / "flows.yaml"
    path.write_text(textwrap.dedent(BROKEN_FLOW).lstrip("\n"))
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "nodes.sales" in err and "orphan" in err


# -- agent states --------------------------------------------------------------------------------------------


def test_agent_state_settings_are_read_and_checked() -> None:
    tenant = parse_config("tenants:\n  - {name: default, require_reason: true, missed_in_a_row: 2}\n").tenants[0]
    assert (tenant.require_reason, tenant.missed_in_a_row) == (True, 2)
    defaults = parse_config(MINIMAL).tenants[0]
    assert (defaults.require_reason, defaults.missed_in_a_row) == (False, 1)
    assert errors("""
        tenants:
          - name: default
            not_ready_reasons: []
            require_reason: true
        """) == ["bad.yaml:4: tenants[0].require_reason: require_reason needs at least one code in not_ready_reasons"]
    (message,) = errors("tenants:\n  - {name: default, missed_in_a_row: 0}\n")
    assert "tenants[0].missed_in_a_row" in message and "greater than or equal to 1" in message


def test_a_pause_code_without_reason_is_refused_where_a_reason_is_required() -> None:
    (message,) = errors("""
        tenants:
          - name: default
            require_reason: true
            dialplan:
              - {match: '^\\*50$', to: 'app:agent:pause'}
        """)
    assert "tenants[0].dialplan[0].to: the tenant has require_reason: write app:agent:pause:REASON" in message

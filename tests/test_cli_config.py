"""`hatif config import FILE` and `hatif config export [--tenant T]`: a whole center in and out of the store."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hatif import cli
from hatif.config import load_config

CENTER = """
tenants:
  - name: acme
    domains: [acme.test]
    users:
      - {username: "1001", password: secret-1001}
    dialplan:
      - {match: '^(1\\d{3})$', to: extension}
      - {match: '^800$', to: 'queue:sales'}
    queues:
      - {name: sales}
    agents:
      - {user: "1001", queues: [sales]}
  - name: globex
    users:
      - {username: "2001", password: secret-2001}
"""


def _boot(tmp_path: Path) -> Path:
    path = tmp_path / "boot.yaml"
    path.write_text(f"store: {{path: {tmp_path / 'hatif.db'}}}\ntenants:\n  - name: default\n", encoding="utf-8")
    return path


def test_import_then_export_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    boot = _boot(tmp_path)
    center = tmp_path / "center.yaml"
    center.write_text(CENTER, encoding="utf-8")
    assert cli.main(["config", "import", str(center), "--config", str(boot)]) == 0
    assert "imported tenants acme, globex" in capsys.readouterr().out
    assert cli.main(["config", "export", "--config", str(boot)]) == 0
    exported = tmp_path / "exported.yaml"
    exported.write_text(capsys.readouterr().out, encoding="utf-8")
    assert load_config(exported).tenants == load_config(center).tenants
    assert cli.main(["check-config", str(exported)]) == 0
    capsys.readouterr()
    assert cli.main(["config", "export", "--tenant", "globex", "--config", str(boot)]) == 0
    assert [t["name"] for t in yaml.safe_load(capsys.readouterr().out)["tenants"]] == ["globex"]
    assert cli.main(["config", "export", "--tenant", "nobody", "--config", str(boot)]) == 2
    assert "no tenant 'nobody' in the store" in capsys.readouterr().err


def test_an_invalid_file_is_refused_with_check_configs_lines_and_nothing_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    boot = _boot(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(CENTER.replace("'queue:sales'", "'queue:nowhere'"), encoding="utf-8")
    assert cli.main(["check-config", str(bad)]) == 2
    said = capsys.readouterr().err
    assert cli.main(["config", "import", str(bad), "--config", str(boot)]) == 2
    assert capsys.readouterr().err == said
    assert f"{bad}:9: tenants[0].dialplan[1].to: no queue 'nowhere' in tenant 'acme'" in said
    assert cli.main(["config", "export", "--config", str(boot)]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == {"tenants": []}


def test_an_import_that_clashes_with_the_stores_tenants_is_refused_whole(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    boot = _boot(tmp_path)
    center = tmp_path / "center.yaml"
    center.write_text(CENTER, encoding="utf-8")
    assert cli.main(["config", "import", str(center), "--config", str(boot)]) == 0
    capsys.readouterr()
    clash = tmp_path / "clash.yaml"
    clash.write_text("tenants:\n  - name: initech\n    domains: [acme.test]\n", encoding="utf-8")
    assert cli.main(["config", "import", str(clash), "--config", str(boot)]) == 2
    assert capsys.readouterr().err == (f"{clash}: tenants[2].domains[0]: domain 'acme.test' already belongs to "
                                       "tenant 'acme'\n")
    assert cli.main(["config", "export", "--config", str(boot)]) == 0
    assert [t["name"] for t in yaml.safe_load(capsys.readouterr().out)["tenants"]] == ["acme", "globex"]

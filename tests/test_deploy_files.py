"""The deployment files agree with the code: compose, per-service env files, flags.env.example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cdb.launcher import WsSourceSettings
from core.settings import ServiceSettings, read_env_file
from core.topics import ServiceName
from services.execution.paper import VenueParams
from services.risk.limits import RiskLimits
from services.signal.strategy import SignalParams

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
EXAMPLE = (ROOT / "flags.env.example").read_text(encoding="utf-8")


@pytest.mark.parametrize("service", list(ServiceName))
def test_compose__each_service_runs_itself_from_its_own_env_file(service: ServiceName) -> None:
    spec = COMPOSE["services"][service.value]
    assert spec["command"] == ["service", service.value]
    assert spec["env_file"] == [f"env/{service.value}.env"]
    assert spec["environment"]["CDB_SERVICE"] == service.value
    assert f"cdb-{service.value}:" in spec["environment"]["REDIS_URL"], "each service logs in as its ACL user"


@pytest.mark.parametrize("service", list(ServiceName))
def test_env_files__resolve_to_the_legacy_path_until_an_operator_flips_them(service: ServiceName) -> None:
    env_file = ROOT / "env" / f"{service.value}.env"
    settings = ServiceSettings.load(service, environ={}, env_file=env_file)
    assert settings.use_pydantic_contracts is False
    assert {"USE_PYDANTIC_CONTRACTS", "CONTRACT_PROFILE", "CONTRACT_SHADOW"} <= set(read_env_file(env_file))


def _example_names() -> set[str]:
    return {m.group(1) for m in re.finditer(r"^#?\s*([A-Z][A-Z0-9_]+)=", EXAMPLE, re.MULTILINE)}


def test_flags_example__lists_every_setting_a_service_reads() -> None:
    wanted = {name.upper() for name in ServiceSettings.model_fields if name != "service"}
    for cls in (SignalParams, RiskLimits, VenueParams, WsSourceSettings):
        prefix = str(cls.model_config.get("env_prefix", ""))
        wanted |= {f"{prefix}{name}".upper() for name in cls.model_fields}
    missing = wanted - _example_names()
    assert not missing, f"flags.env.example does not document: {sorted(missing)}"


def test_flags_example__every_value_given_there_is_accepted() -> None:
    values = read_env_file(ROOT / "flags.env.example")
    ServiceSettings.load(ServiceName.SIGNAL, environ=values)
    for cls in (SignalParams, RiskLimits, VenueParams):
        prefix = str(cls.model_config.get("env_prefix", ""))
        cls.model_validate({n: values[f"{prefix}{n}".upper()] for n in cls.model_fields})

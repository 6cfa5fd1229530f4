"""Service settings: clear booleans and choices only, per-service prefixes, env files.

A value that is not a clear boolean/choice stops start-up with a ConfigError that
names the variable actually read (plain, service-prefixed, or in which env file)
and lists the accepted values; it never silently means "legacy".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.codec import codec_for
from core.errors import ConfigError
from core.settings import BOOL_WORDS, ServiceSettings, read_env_file, redact_url
from core.settings_sources import ServiceEnvSource
from core.topics import CodecPath, Profile, ServiceName

ON = ["true", "True", "TRUE", "1", "yes", "on", "Yes", "ON"]
OFF = ["false", "False", "FALSE", "0", "no", "off", "No", "OFF"]
REFUSED = ["ture", "", "2", "enabled", "t", "y", "f", "n", " true", "true ", "-1", "truee"]


def _load(service: ServiceName | None = None, **environ: str) -> ServiceSettings:
    return ServiceSettings.load(service, environ=environ)


def _refusal(service: ServiceName | None = None, env_file: Path | None = None, **environ: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        ServiceSettings.load(service, environ=environ, env_file=env_file)
    return info.value


def _env_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flags.env"
    path.write_text(text, encoding="utf-8")
    return path


def test_settings__defaults_are_legacy_and_lenient() -> None:
    settings = _load()
    assert settings.use_pydantic_contracts is False
    assert settings.contract_profile is Profile.LENIENT
    assert settings.contract_shadow is False
    assert settings.max_message_bytes == 65_536


@pytest.mark.parametrize("value", ON)
def test_bool_flag__on_words_mean_true(value: str) -> None:
    assert _load(USE_PYDANTIC_CONTRACTS=value).use_pydantic_contracts is True


@pytest.mark.parametrize("value", OFF)
def test_bool_flag__off_words_mean_false(value: str) -> None:
    assert _load(USE_PYDANTIC_CONTRACTS=value).use_pydantic_contracts is False


@pytest.mark.parametrize("value", REFUSED)
def test_bool_flag__unclear_value_is_refused_naming_the_variable(value: str) -> None:
    exc = _refusal(USE_PYDANTIC_CONTRACTS=value)
    assert exc.variable == "USE_PYDANTIC_CONTRACTS"
    assert exc.value == value
    assert exc.accepted == BOOL_WORDS
    assert "USE_PYDANTIC_CONTRACTS" in str(exc)
    assert all(word in str(exc) for word in BOOL_WORDS)


@pytest.mark.parametrize("value", ["ture", "enabled"])
def test_bool_flag__every_boolean_setting_is_as_strict(value: str) -> None:
    exc = _refusal(CONTRACT_SHADOW=value)
    assert exc.variable == "CONTRACT_SHADOW"
    assert exc.accepted == BOOL_WORDS


def test_bool_flag__bad_service_prefixed_value_names_the_prefixed_variable() -> None:
    exc = _refusal(ServiceName.SIGNAL, SIGNAL_USE_PYDANTIC_CONTRACTS="ture", USE_PYDANTIC_CONTRACTS="true")
    assert exc.variable == "SIGNAL_USE_PYDANTIC_CONTRACTS"
    assert "SIGNAL_USE_PYDANTIC_CONTRACTS='ture'" in str(exc)


@pytest.mark.parametrize("value", ["lenient", "strict", "STRICT", "Lenient", "strict "])
def test_contract_profile__accepts_lenient_and_strict_in_any_case(value: str) -> None:
    assert _load(CONTRACT_PROFILE=value).contract_profile is Profile(value.strip().lower())


@pytest.mark.parametrize("value", ["relaxed", "", "true", "stric", "strict-ish"])
def test_contract_profile__anything_else_is_refused_naming_the_variable(value: str) -> None:
    exc = _refusal(CONTRACT_PROFILE=value)
    assert exc.variable == "CONTRACT_PROFILE"
    assert exc.accepted == ("lenient", "strict")


@pytest.mark.parametrize("value", ["0", "-5", "64k", ""])
def test_max_message_bytes__must_be_a_positive_integer(value: str) -> None:
    assert _refusal(MAX_MESSAGE_BYTES=value).variable == "MAX_MESSAGE_BYTES"


def test_service_prefix__overrides_the_plain_variable_for_that_service_only() -> None:
    env = {"USE_PYDANTIC_CONTRACTS": "false", "SIGNAL_USE_PYDANTIC_CONTRACTS": "true"}
    assert ServiceSettings.load(ServiceName.SIGNAL, environ=env).use_pydantic_contracts is True
    assert ServiceSettings.load(ServiceName.RISK, environ=env).use_pydantic_contracts is False
    assert ServiceSettings.load(None, environ=env).use_pydantic_contracts is False


def test_service_prefix__overrides_the_profile_too() -> None:
    env = {"CONTRACT_PROFILE": "lenient", "EXECUTION_CONTRACT_PROFILE": "strict"}
    assert ServiceSettings.load(ServiceName.EXECUTION, environ=env).contract_profile is Profile.STRICT
    assert ServiceSettings.load(ServiceName.WS, environ=env).contract_profile is Profile.LENIENT


def test_overrides__beat_every_variable() -> None:
    env = {"USE_PYDANTIC_CONTRACTS": "false", "RISK_USE_PYDANTIC_CONTRACTS": "false"}
    settings = ServiceSettings.load(ServiceName.RISK, environ=env, overrides={"use_pydantic_contracts": True})
    assert settings.use_pydantic_contracts is True


@pytest.mark.parametrize("load", [ServiceSettings.load, ServiceSettings.resolve])
def test_overrides__a_name_that_is_no_setting_is_refused_with_the_nearest_one(load: object) -> None:
    with pytest.raises(ConfigError, match=r"'partitions' is not accepted.*did you mean 'topic_partitions'"):
        load(ServiceName.EXECUTION, environ={}, overrides={"partitions": 4})  # type: ignore[operator]
    with pytest.raises(ConfigError, match=r"'zzz' is not accepted.*no such setting"):
        load(ServiceName.EXECUTION, environ={}, overrides={"zzz": 1})  # type: ignore[operator]


def test_overrides__unknown_variables_in_the_environment_are_left_alone() -> None:
    settings = ServiceSettings.load(ServiceName.RISK, environ={"PARTITIONS": "4", "HOME": "/root"})
    assert settings.topic_partitions == 1


def test_resolve__records_where_each_value_came_from() -> None:
    env = {"USE_PYDANTIC_CONTRACTS": "1", "RISK_CONTRACT_PROFILE": "strict"}
    _, origins = ServiceSettings.resolve(ServiceName.RISK, environ=env, overrides={"contract_shadow": True})
    assert origins["use_pydantic_contracts"] == "env USE_PYDANTIC_CONTRACTS"
    assert origins["contract_profile"] == "env RISK_CONTRACT_PROFILE"
    assert origins["contract_shadow"] == "option"
    assert origins["redis_url"] == "default"


def test_env_file__comments_quotes_and_export_are_understood(tmp_path: Path) -> None:
    path = _env_file(
        tmp_path,
        "# flags for week 2\n"
        "\n"
        "export USE_PYDANTIC_CONTRACTS=yes\n"
        "CONTRACT_PROFILE = 'strict'\n"
        '  CONTRACT_SHADOW="on"\n'
        "REDIS_URL=redis://127.0.0.1:6379/0 # the shared server\n",
    )
    settings = ServiceSettings.load(ServiceName.SIGNAL, environ={}, env_file=path)
    assert settings.use_pydantic_contracts is True
    assert settings.contract_profile is Profile.STRICT
    assert settings.contract_shadow is True
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


def test_env_file__quoted_value_keeps_its_hash_and_spaces(tmp_path: Path) -> None:
    path = _env_file(tmp_path, "KEY_PREFIX=\"dev #1 \" # trailing comment\nINSTANCE='a b'\n")
    assert read_env_file(path) == {"KEY_PREFIX": "dev #1 ", "INSTANCE": "a b"}


def test_env_file__environment_variables_beat_the_file(tmp_path: Path) -> None:
    path = _env_file(tmp_path, "USE_PYDANTIC_CONTRACTS=true\nCONTRACT_PROFILE=strict\n")
    settings = ServiceSettings.load(
        ServiceName.RISK, environ={"USE_PYDANTIC_CONTRACTS": "false"}, env_file=path
    )
    assert settings.use_pydantic_contracts is False
    assert settings.contract_profile is Profile.STRICT


def test_env_file__service_prefixed_line_applies_to_that_service(tmp_path: Path) -> None:
    path = _env_file(tmp_path, "USE_PYDANTIC_CONTRACTS=false\nSIGNAL_USE_PYDANTIC_CONTRACTS=true\n")
    assert ServiceSettings.load(ServiceName.SIGNAL, environ={}, env_file=path).use_pydantic_contracts is True
    assert ServiceSettings.load(ServiceName.RISK, environ={}, env_file=path).use_pydantic_contracts is False


def test_env_file__bad_value_names_the_variable_and_the_file(tmp_path: Path) -> None:
    path = _env_file(tmp_path, "RISK_USE_PYDANTIC_CONTRACTS=enabled\n")
    exc = _refusal(ServiceName.RISK, env_file=path)
    assert "RISK_USE_PYDANTIC_CONTRACTS" in exc.variable
    assert str(path) in exc.variable
    assert exc.accepted == BOOL_WORDS


def test_env_file__malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = _env_file(tmp_path, "# ok\nUSE_PYDANTIC_CONTRACTS true\n")
    exc = _refusal(env_file=path)
    assert exc.variable == f"{path}:2"


def test_env_file__missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "no-such.env"
    exc = _refusal(env_file=path)
    assert str(path) in exc.variable


def test_redis_url__empty_means_not_configured() -> None:
    assert _load(REDIS_URL="").redis_url is None


def test_redact_url__hides_the_password_only() -> None:
    assert redact_url("redis://user:s3cret@127.0.0.1:6379/0") == "redis://user:***@127.0.0.1:6379/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url(None) == ""


@pytest.mark.parametrize(
    ("environ", "path", "profile"),
    [
        ({}, CodecPath.LEGACY, None),
        ({"USE_PYDANTIC_CONTRACTS": "true"}, CodecPath.PYDANTIC, Profile.LENIENT),
        ({"USE_PYDANTIC_CONTRACTS": "on", "CONTRACT_PROFILE": "strict"}, CodecPath.PYDANTIC, Profile.STRICT),
    ],
)
def test_codec_for__follows_the_settings(
    environ: dict[str, str], path: CodecPath, profile: Profile | None
) -> None:
    codec = codec_for(ServiceSettings.load(ServiceName.SIGNAL, environ=environ))
    assert codec.path is path
    assert codec.profile is profile


def test_env_file__key_without_equals_is_malformed_on_its_own_line(tmp_path: Path) -> None:
    path = _env_file(tmp_path, "USE_PYDANTIC_CONTRACTS=true\n\n\nCONTRACT_PROFILE\n")
    exc = _refusal(env_file=path)
    assert exc.variable == f"{path}:4"
    assert exc.value == "CONTRACT_PROFILE"


def test_service_env_source__is_a_settings_source_recording_every_origin(tmp_path: Path) -> None:
    path = _env_file(tmp_path, "CONTRACT_PROFILE=strict\nSIGNAL_KEY_PREFIX=from-file:\n")
    source = ServiceEnvSource(ServiceSettings, "signal", {"USE_PYDANTIC_CONTRACTS": "on"}, path)

    values = source()

    assert values == {
        "use_pydantic_contracts": "on",
        "contract_profile": "strict",
        "key_prefix": "from-file:",
    }
    assert source.origins["key_prefix"] == f"file {path}: SIGNAL_KEY_PREFIX"
    assert source.origins["use_pydantic_contracts"] == "env USE_PYDANTIC_CONTRACTS"
    assert source.origins["redis_url"] == "default"
    assert "service" not in source.origins


def test_settings__a_bare_constructor_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTRACT_PROFILE", "strict")
    monkeypatch.setenv("KEY_PREFIX", "from-env:")
    assert ServiceSettings().key_prefix == ""
    assert ServiceSettings.load(environ={"KEY_PREFIX": "x:"}).key_prefix == "x:"

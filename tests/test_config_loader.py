"""The YAML loader: errors with file, line, path and fix; ${ENV} interpolation; secrets masked; docs current."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from spendwatch.cli import cli
from spendwatch.config import MASK, ConfigError, Settings, effective_config, interpolate, load_config, load_settings
from spendwatch.config_docs import render

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "spendwatch.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spendwatch.yaml"
    path.write_text(text)
    return path


def issues_of(path: Path, environ=None):
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    return info.value.issues


def test_no_file_and_empty_file_mean_defaults(tmp_path):
    assert load_settings(None) == Settings()
    assert load_settings(write(tmp_path, "# nothing\n")) == Settings()


def test_unknown_key_names_line_path_and_suggests(tmp_path):
    path = write(tmp_path, "kafka:\n  topics:\n    raw: r\nclickhouse:\n  databse: x\n")
    [issue] = issues_of(path)
    assert (issue.file, issue.line, issue.path) == (str(path), 5, "clickhouse.databse")
    assert "unknown key 'databse'" in issue.message and "did you mean 'database'" in issue.hint
    assert f"{path}:5: clickhouse.databse" in str(ConfigError([issue]))


def test_wrong_type_and_range_each_reported(tmp_path):
    path = write(tmp_path, "streams:\n  partitions: many\nadapters:\n  max_message_bytes: 10\n")
    issues = {i.path: i for i in issues_of(path)}
    assert issues["streams.partitions"].line == 2 and "number" in issues["streams.partitions"].hint
    assert issues["adapters.max_message_bytes"].line == 4
    assert "1024" in issues["adapters.max_message_bytes"].message


def test_list_items_get_their_own_line(tmp_path):
    path = write(tmp_path, "detectors:\n  budget_pace:\n    budgets:\n      - subject: search\n"
                           "        quarterly_usd: 10\n      - subject: ads\n        quaterly_usd: 5\n")
    [issue] = issues_of(path)
    assert issue.path == "detectors.budget_pace.budgets[1].quaterly_usd" and issue.line == 7


def test_yaml_syntax_error_has_a_line(tmp_path):
    [issue] = issues_of(write(tmp_path, "kafka:\n  topics: {raw: x\nstreams: {}\n"))
    assert "not valid YAML" in issue.message and issue.line is not None


def test_top_level_must_be_a_mapping(tmp_path):
    [issue] = issues_of(write(tmp_path, "- kafka\n"))
    assert "mapping" in issue.message and "kafka" in issue.hint


def test_env_interpolation_and_defaults(tmp_path):
    path = write(tmp_path, "kafka:\n  bootstrap_servers: ${BROKERS}\nclickhouse:\n"
                           "  database: ${CH_DB:-spend}\n  url: http://${CH_HOST:-localhost}:8123\n")
    loaded = load_config(path, environ={"BROKERS": "b1:9092,b2:9092"})
    assert loaded.settings.kafka.bootstrap_servers == "b1:9092,b2:9092"
    assert loaded.settings.clickhouse.database == "spend"
    assert loaded.settings.clickhouse.url == "http://localhost:8123"
    assert ("kafka", "bootstrap_servers") in loaded.env_paths


def test_unset_variable_is_named_with_line_and_fix(tmp_path):
    [issue] = issues_of(write(tmp_path, "streams:\n  app_id: sw\nkafka:\n  bootstrap_servers: ${BROKERS}\n"))
    assert (issue.line, issue.path) == (4, "kafka.bootstrap_servers")
    assert "BROKERS is not set" in issue.message and "${BROKERS:-" in issue.hint


def test_literal_dollar_and_bad_reference():
    assert interpolate("$${HOME}", environ={"HOME": "x"}) == "${HOME}"
    with pytest.raises(ConfigError, match="not a valid variable reference"):
        interpolate("${not valid}", environ={})


def test_secrets_from_env_are_masked_and_never_echoed(tmp_path):
    secret = "s3cr3t-host.internal:9092"
    path = write(tmp_path, "kafka:\n  bootstrap_servers: ${BROKERS}\n")
    loaded = load_config(path, environ={"BROKERS": secret})
    shown = effective_config(loaded)
    assert shown["kafka"]["bootstrap_servers"] == MASK
    assert shown["clickhouse"]["password_env"] == "CLICKHOUSE_PASSWORD"  # a variable name, not a secret
    assert secret not in repr(shown)


def test_validation_errors_do_not_echo_values(tmp_path):
    path = write(tmp_path, "streams:\n  partitions: ${P}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"P": "hunter2-secret"})
    assert "hunter2" not in str(info.value)


def test_a_secret_written_into_the_file_is_refused_with_the_fix(tmp_path):
    [issue] = issues_of(write(tmp_path, "clickhouse:\n  password: hunter2\n"))
    assert issue.path == "clickhouse.password" and "password_env" in issue.hint
    assert "hunter2" not in str(issue)


def test_example_config_is_valid_and_has_every_section():
    loaded = load_config(EXAMPLE, environ={})
    text = EXAMPLE.read_text()
    for section in Settings.model_fields:
        assert f"\n{section}:" in text, f"deploy/spendwatch.example.yaml lacks a '{section}:' section"
    assert loaded.warnings == []


def test_docs_config_md_is_current():
    current = (ROOT / "docs" / "config.md").read_text()
    assert current == render(), "docs/config.md is stale: run python -m spendwatch.config_docs"


def test_cli_validate_and_show(tmp_path, monkeypatch):
    runner = CliRunner()
    good = runner.invoke(cli, ["config", "validate", str(EXAMPLE)])
    assert good.exit_code == 0 and "OK" in good.output
    bad = write(tmp_path, "clickhouse:\n  databse: x\n")
    result = runner.invoke(cli, ["config", "validate", str(bad)])
    assert result.exit_code == 1 and f"{bad}:2: clickhouse.databse" in result.output
    monkeypatch.setenv("BROKERS", "secret-broker:9092")
    path = write(tmp_path, "kafka:\n  bootstrap_servers: ${BROKERS}\n")
    shown = runner.invoke(cli, ["config", "show", "--config", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "secret-broker" not in shown.output and MASK in shown.output
    assert "detectors:" in shown.output  # defaults filled in
    monkeypatch.setenv("SPENDWATCH_CONFIG", str(path))
    assert "secret-broker" not in runner.invoke(cli, ["config", "show", "--format", "json"]).output


def test_price_tiers_written_once_reach_both_the_detector_and_the_stored_model_tier(tmp_path: Path) -> None:
    for section in ("adapters:\n  pricing:\n", "detectors:\n  model_mix_drift:\n"):
        path = tmp_path / "spendwatch.yaml"
        indent = " " * (section.count("\n") * 2)
        path.write_text(f"{section}{indent}tiers:\n{indent}  frontier_min_input_per_mtok: 5\n")
        settings = load_config(path, environ={}).settings
        assert settings.adapters.pricing.tiers.frontier_min_input_per_mtok == 5
        assert settings.detectors.model_mix_drift.tiers == settings.adapters.pricing.tiers


def test_two_different_price_tiers_are_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "spendwatch.yaml"
    path.write_text("adapters:\n  pricing:\n    tiers:\n      frontier_min_input_per_mtok: 5\n"
                    "detectors:\n  model_mix_drift:\n    tiers:\n      frontier_min_input_per_mtok: 3\n")
    with pytest.raises(ConfigError, match="keep only adapters.pricing.tiers"):
        load_config(path, environ={})


def test_settings_of_an_earlier_release_load_with_a_warning(tmp_path, caplog):
    path = write(tmp_path, "detectors:\n  model_mix_drift:\n    rare_share: 0.05\n    min_requests: 20\n"
                           "  cache_hit_drop:\n    wasteful_ratio: 0.2\n    severity: warning\n")
    with caplog.at_level("WARNING", logger="spendwatch.config"):
        settings = load_settings(path)
    assert settings.detectors.cache_hit_drop.severity == "warning"
    assert "min_requests, rare_share no longer used" in caplog.text and "wasteful_ratio no longer used" in caplog.text

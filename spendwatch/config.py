"""The one YAML configuration file: loading, ``${ENV_VAR}`` interpolation, validation.

Each area owns its section model next to its code; this module only assembles them
(:class:`Settings`) and loads the file:

* ``${VAR}`` and ``${VAR:-default}`` in any string value are replaced from the environment
  (``$${`` is a literal ``${``). Values that came from the environment are remembered, so
  :func:`effective_config` masks them: secrets never reach the file, the logs or ``config show``.
* Errors name the file, the line, the dotted path and a fix (:class:`ConfigError`); the values
  themselves are never echoed, as they may be secrets.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from spendwatch.detectors.config import DetectorsConfig
from spendwatch.schemas.adapters.config import AdaptersConfig
from spendwatch.sinks.clickhouse.config import ClickHouseConfig
from spendwatch.sinks.paging.config import PagingConfig
from spendwatch.streams.config import KafkaConfig, StreamsConfig
from spendwatch.streams.ingest.config import IngestConfig

#: Environment variable naming the config file when no ``--config`` is given.
CONFIG_ENV_VAR = "SPENDWATCH_CONFIG"
MASK = "********"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(
        default=Path(os.environ.get("SPENDWATCH_HOME", ".spendwatch")),
        description="Where embedded Kafka, chDB and worker state live.",
    )
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    streams: StreamsConfig = Field(default_factory=StreamsConfig)
    clickhouse: ClickHouseConfig = Field(default_factory=ClickHouseConfig)
    detectors: DetectorsConfig = Field(default_factory=DetectorsConfig)
    paging: PagingConfig = Field(default_factory=PagingConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    adapters: AdaptersConfig = Field(default_factory=AdaptersConfig)

    @model_validator(mode="after")
    def _one_set_of_price_tiers(self) -> Settings:
        """``adapters.pricing.tiers`` (the ClickHouse ``model_tier`` column) and
        ``detectors.model_mix_drift.tiers`` (what the detector compares) are one setting: either
        may be written, the other follows it, and two different values are refused."""
        drift = self.detectors.model_mix_drift
        pricing = self.adapters.pricing
        in_detector, in_pricing = "tiers" in drift.model_fields_set, "tiers" in pricing.model_fields_set
        if in_detector and in_pricing and drift.tiers != pricing.tiers:
            raise ValueError(
                "detectors.model_mix_drift.tiers and adapters.pricing.tiers differ; they are one setting "
                "(the tier the detector compares is the model_tier ClickHouse stores): keep only "
                "adapters.pricing.tiers")
        if in_detector and not in_pricing:
            self.adapters = self.adapters.model_copy(
                update={"pricing": pricing.model_copy(update={"tiers": drift.tiers})})
        elif in_pricing and not in_detector:
            self.detectors = self.detectors.model_copy(
                update={"model_mix_drift": drift.model_copy(update={"tiers": pricing.tiers})})
        return self

    @model_validator(mode="after")
    def _event_age_follows_retention(self) -> Settings:
        """An event older than the ClickHouse raw retention would be dropped by its TTL at once: unless
        ``adapters.event_time.max_age_days`` is set, live ingestion accepts events up to that age."""
        window = self.adapters.event_time
        if window.max_age_days is None:
            self.adapters = self.adapters.model_copy(update={"event_time": window.model_copy(
                update={"max_age_days": float(self.clickhouse.raw_retention_days)})})
        return self


Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file."""

    file: str
    line: int | None
    path: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        at = f" {self.path}:" if self.path else ""
        fix = f" Fix: {self.hint}" if self.hint else ""
        return f"{where}:{at} {self.message}.{fix}"


class ConfigError(ValueError):
    """A configuration file is invalid; every issue names the file, line, dotted path and the fix."""

    def __init__(self, issues: list[ConfigIssue] | str) -> None:
        if isinstance(issues, str):
            issues = [ConfigIssue(file="", line=None, path="", message=issues)]
        self.issues = issues
        super().__init__("\n".join(str(i).lstrip(": ") for i in issues))


@dataclass
class LoadedConfig:
    """A validated config and where its values came from."""

    settings: Settings
    path: Path | None = None
    env_paths: set[Path_] = field(default_factory=set)
    warnings: list[ConfigIssue] = field(default_factory=list)


# ----------------------------------------------------------------------------- YAML with line numbers


def _line_map(node: yaml.Node | None, path: Path_ = (), out: dict[Path_, int] | None = None) -> dict[Path_, int]:
    """Map each dotted path of a composed YAML document to its 1-based line."""
    out = {} if out is None else out
    if node is None:
        return out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark.line)
            out[(*path, name)] = key.start_mark.line + 1
            _line_map(value, (*path, name), out)
            out[(*path, name)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, i), out)
    return out


def _line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    for end in range(len(path), -1, -1):
        line = lines.get(tuple(path[:end]))
        if line is not None:
            return line
    return None


# ----------------------------------------------------------------------------- ${ENV} interpolation

_ENV = re.compile(r"\$(\$)?\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(
    value: Any, *, environ: dict[str, str] | os._Environ[str] | None = None, file: str = "<config>",
    lines: dict[Path_, int] | None = None, path: Path_ = (), env_paths: set[Path_] | None = None,
) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a decoded YAML value.

    Paths whose value used an environment variable are added to ``env_paths``.

    >>> interpolate({"a": "${HOST:-localhost}:${PORT}"}, environ={"PORT": "9092"})
    {'a': 'localhost:9092'}
    >>> interpolate("$${NOT_A_VAR}", environ={})
    '${NOT_A_VAR}'
    """
    environ = os.environ if environ is None else environ
    lines = lines or {}
    if isinstance(value, str):
        used_env = False

        def sub(m: re.Match[str]) -> str:
            nonlocal used_env
            if m.group(1):  # $${...} is a literal ${...}
                return "${" + m.group(2) + "}"
            body = m.group(2)
            name, sep, default = body.partition(":-")
            if not _NAME.fullmatch(name):
                raise ConfigError([ConfigIssue(
                    file, _line_of(lines, path), _dotted(path), f"'${{{body}}}' is not a valid variable reference",
                    "write ${NAME} or ${NAME:-default} with NAME made of letters, digits and _ (or $${ for a literal)",
                )])
            if name in environ:
                used_env = True
                return environ[name]
            if sep:
                return default
            raise ConfigError([ConfigIssue(
                file, _line_of(lines, path), _dotted(path), f"environment variable {name} is not set",
                f"export {name}=... before starting spendwatch, or give a default: ${{{name}:-value}}",
            )])

        result = _ENV.sub(sub, value)
        if used_env and env_paths is not None:
            env_paths.add(path)
        return result
    if isinstance(value, dict):
        return {
            k: interpolate(v, environ=environ, file=file, lines=lines, path=(*path, str(k)), env_paths=env_paths)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            interpolate(v, environ=environ, file=file, lines=lines, path=(*path, i), env_paths=env_paths)
            for i, v in enumerate(value)
        ]
    return value


# ----------------------------------------------------------------------------- validation errors


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(model: type[BaseModel], path: Path_) -> type[BaseModel] | None:
    """The pydantic model that holds the last key of ``path`` (for "did you mean")."""
    current: Any = model
    for part in path[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = _inner_model(current.model_fields[part].annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _hint(err: dict[str, Any], path: Path_) -> str | None:
    kind = err.get("type", "")
    key = path[-1] if path else ""
    if kind == "extra_forbidden":
        owner = _model_at(Settings, path)
        if owner is not None and f"{key}_env" in owner.model_fields:
            return (f"secrets never go in the file: export the value in an environment variable and write "
                    f"'{key}_env: THAT_VARIABLE_NAME'")
        if owner is not None:
            close = difflib.get_close_matches(str(key), list(owner.model_fields), n=1)
            known = ", ".join(owner.model_fields)
            if close:
                return f"did you mean '{close[0]}'? Known keys here: {known}"
            return f"remove '{key}'; known keys here: {known}"
        return f"remove '{key}'"
    if kind == "missing":
        return f"add '{key}:' here"
    if kind.startswith(("int_", "float_", "decimal_")):
        return "write a plain number (no quotes, no units)"
    if kind.startswith("bool"):
        return "write true or false"
    if kind in ("literal_error", "enum"):
        expected = (err.get("ctx") or {}).get("expected")
        return f"use one of {expected}" if expected else None
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "pick a value inside the allowed range"
    if kind in ("model_type", "dict_type"):
        return "this must be a mapping of keys (indent the keys below it)"
    if kind == "list_type":
        return "this must be a list (items starting with '- ')"
    if kind == "string_type":
        return "quote the value"
    return "see docs/config.md for this setting"


def _issues(exc: ValidationError, file: str, lines: dict[Path_, int]) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors(include_url=False, include_input=False):
        path: Path_ = tuple(err.get("loc", ()))
        message = err.get("msg", "invalid value")
        if err.get("type") == "extra_forbidden":
            message = f"unknown key '{path[-1]}'" if path else "unknown key"
        elif err.get("type") == "missing":
            message = "required setting is missing"
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        issues.append(ConfigIssue(file, _line_of(lines, path), _dotted(path), message.rstrip("."), _hint(err, path)))
    return issues


# ----------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, *, environ: dict[str, str] | None = None) -> LoadedConfig:
    """Load, interpolate and validate a config file; ``None`` means all defaults.

    Raises
    ------
    ConfigError
        With one :class:`ConfigIssue` per problem (file, line, dotted path, message, fix).
    """
    if path is None:
        return LoadedConfig(Settings())
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(name, None, "", f"cannot read the file ({exc.strerror})",
                                       "check the path and permissions")]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(name, None, "", "the file is not UTF-8 text", "save it as UTF-8")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigIssue(
            name, mark.line + 1 if mark else None, "", f"not valid YAML: {problem}",
            "check the indentation and quoting on that line",
        )]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([ConfigIssue(
            name, 1, "", "the top level must be a mapping of sections",
            f"start with section names such as: {', '.join(Settings.model_fields)}",
        )])
    lines = _line_map(node)
    env_paths: set[Path_] = set()
    data = interpolate(raw, environ=environ, file=name, lines=lines, env_paths=env_paths)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_issues(exc, name, lines)) from None
    loaded = LoadedConfig(settings, path, env_paths)
    loaded.warnings = _literal_secret_warnings(raw, name, lines)
    return loaded


def load_settings(path: str | Path | None = None) -> Settings:
    """Load and validate a config file; no file means all defaults."""
    return load_config(path).settings


# ----------------------------------------------------------------------------- secrets and `config show`

_SECRET_KEY = re.compile(r"(secret|password|passwd|token|api_key|apikey|routing_key|webhook|credential|private)", re.I)


def _is_secret_key(key: Any) -> bool:
    """Keys whose value is a secret; ``*_env`` keys hold a variable *name* and are not."""
    return isinstance(key, str) and bool(_SECRET_KEY.search(key)) and not key.endswith(("_env", "_envs", "_env_vars"))


def _walk(value: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, (*path, i))


#: Query parameters of a URL whose value is a credential.
_SECRET_PARAM = re.compile(r"(secret|password|passwd|token|key|sig|signature|auth|credential)", re.I)
#: URL paths that carry a credential: Slack incoming webhooks, PagerDuty integration keys.
_SECRET_PATH = re.compile(r"^(?P<keep>/services/|/integration/|/hooks/)(?P<secret>[^?#]+)")


def mask_url_credentials(value: str) -> str | None:
    """``value`` with the credentials typed into it masked, or ``None`` when it is not a URL holding any.

    >>> mask_url_credentials("https://default:hunter2@ch.example.com:8443")
    'https://********@ch.example.com:8443'
    >>> mask_url_credentials("https://hooks.slack.com/services/T000/B000/XXXX")
    'https://hooks.slack.com/services/********'
    >>> mask_url_credentials("https://slack.com/api/?token=xoxb-1&team=a")
    'https://slack.com/api/?token=********&team=a'
    >>> mask_url_credentials("https://events.pagerduty.com/v2/enqueue") is None
    True
    """
    if "://" not in value or any(c.isspace() for c in value.strip()):
        return None
    try:
        url = urlsplit(value.strip())
        url.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return None
    if not url.scheme or not url.netloc:
        return None
    netloc, path, query, found = url.netloc, url.path, url.query, False
    if "@" in netloc:
        netloc, found = f"{MASK}@{netloc.rpartition('@')[2]}", True
    secret_path = _SECRET_PATH.match(path)
    if secret_path and secret_path.group("secret").strip("/"):
        path, found = secret_path.group("keep") + MASK, True
    if query:
        params = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(k) and v for k, v in params):
            query = "&".join(f"{k}={MASK if _SECRET_PARAM.search(k) and v else v}" for k, v in params)
            found = True
    return urlunsplit((url.scheme, netloc, path, query, url.fragment)) if found else None


def _literal_secret_warnings(raw: dict[str, Any], file: str, lines: dict[Path_, int]) -> list[ConfigIssue]:
    warnings = []
    for path, value in _walk(raw):
        if not path or not isinstance(value, str) or not value or "${" in value:
            continue
        if _is_secret_key(path[-1]):
            warnings.append(ConfigIssue(
                file, _line_of(lines, path), _dotted(path), "looks like a secret written into the file",
                f"put it in an environment variable and write ${{{str(path[-1]).upper()}}} instead",
            ))
        elif (masked := mask_url_credentials(value)) is not None:
            warnings.append(ConfigIssue(
                file, _line_of(lines, path), _dotted(path), f"a URL with a credential written into it ({masked})",
                "write the URL without it and give the credential through the environment: the section's *_env "
                "setting, or ${VAR} in the URL",
            ))
    return warnings


def _mask(value: Any, path: Path_, env_paths: set[Path_]) -> Any:
    if path in env_paths or (path and _is_secret_key(path[-1]) and isinstance(value, str) and value):
        return MASK
    if isinstance(value, str) and (masked := mask_url_credentials(value)) is not None:
        return masked
    if isinstance(value, dict):
        return {k: _mask(v, (*path, k), env_paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, (*path, i), env_paths) for i, v in enumerate(value)]
    return value


def _secret_paths(model: BaseModel, path: Path_ = ()) -> Iterator[Path_]:
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        here = (*path, name)
        if isinstance(value, SecretStr):
            yield here
        elif isinstance(value, BaseModel):
            yield from _secret_paths(value, here)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _secret_paths(item, (*here, i))
        elif isinstance(value, dict):
            for k, item in value.items():
                if isinstance(item, SecretStr):
                    yield (*here, k)
                elif isinstance(item, BaseModel):
                    yield from _secret_paths(item, (*here, k))


def effective_config(loaded: LoadedConfig) -> dict[str, Any]:
    """The effective configuration as plain data, every default filled in, secrets masked.

    Masked: values that came from ``${ENV}`` interpolation, ``SecretStr`` fields and values
    under secret-looking keys (``password``, ``token``...; ``*_env`` keys hold names and stay).
    """
    data = loaded.settings.model_dump(mode="json", by_alias=True)
    hidden = set(loaded.env_paths) | set(_secret_paths(loaded.settings))
    return _mask(data, (), hidden)

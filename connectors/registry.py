"""Registered connectors: registration files, validation, storage, and live instances.

A registration file (YAML or JSON) holds ``name``, ``kind``, ``settings`` and ``secrets``; each kind
uses its platform's own parameter names and every kind accepts ``settings.base_url``. Secrets are
validated, then stored encrypted; they are shown masked everywhere.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from connectors import connector_class
from connectors.base import Connector
from connectors.errors import ConfigurationError
from connectors.ratelimit import RateLimiter, SharedBudget


class RegistrationRow(Protocol):
    kind: str
    settings: dict[str, Any]
    version: int


class RegistrationStore(Protocol):
    """Where registrations live (the hub's store implements it). Connectors know no store: the
    registry only needs these three calls, so it depends on this protocol, not on ``store``."""

    def save_connector(self, name: str, kind: str, settings: dict, secrets: dict[str, str], actor: str) -> bool: ...

    def get_connector(self, name: str) -> Any: ...

    def connector_secrets(self, row: Any) -> dict[str, str]: ...


_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


class Registration(BaseModel):
    name: str = Field(description="unique name, lower-case letters, digits, '-', '_', '.'")
    kind: str
    settings: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use lower-case letters, digits, '-', '_' or '.', starting with a letter or digit")
        return value

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets_as_strings(cls, value: Any) -> Any:
        return {k: str(v) for k, v in value.items()} if isinstance(value, dict) else value

    def validate_kind(self) -> type[Connector]:
        """Check settings and secrets against the kind's models; errors name the field."""
        cls = connector_class(self.kind)
        problems: list[str] = []
        for part, model in (("settings", cls.Settings), ("secrets", cls.Secrets)):
            try:
                model.model_validate(getattr(self, part))
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(p) for p in err["loc"])
                    problems.append(f"{part}.{loc}: {err['msg']}")
        if problems:
            raise ConfigurationError(f"connector {self.name!r} ({self.kind}): " + "; ".join(problems))
        return cls


def load_registration(path: Path) -> Registration:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    try:
        return Registration.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc


def register(store: RegistrationStore, reg: Registration, actor: str) -> bool:
    """Validate and store a registration. A credential is a secret wherever the file puts it: a
    setting that the kind also accepts as a secret (Taobao's ``session``) is moved to the secrets
    before it is stored, so it is kept encrypted and shown masked like the others."""
    cls = reg.validate_kind()
    settings, secrets = dict(reg.settings), dict(reg.secrets)
    for name in list(settings):
        if name in cls.Secrets.model_fields and settings[name] not in (None, ""):
            value = settings.pop(name)
            secrets.setdefault(name, str(value))
    return store.save_connector(reg.name, reg.kind, settings, secrets, actor)


def instantiate(store: RegistrationStore, name: str) -> Connector:
    row = store.get_connector(name)
    if row is None:
        raise ConfigurationError(f"no connector named {name!r} is registered (tongdao connectors list)")
    return connector_class(row.kind).from_config(name, row.settings, store.connector_secrets(row))


def share_limits(connector: Connector, budget: SharedBudget) -> int:
    """Make the connector's rate limiters count in ``budget`` (keyed by connector name), so its
    platform's limit holds across every worker process. Returns how many limiters were found."""
    found = 0
    for value in vars(connector).values():
        limiter = value if isinstance(value, RateLimiter) else getattr(value, "limiter", None)
        if isinstance(limiter, RateLimiter):
            limiter.share(connector.name, budget)
            found += 1
    return found


class ConnectorPool:
    """Live connector instances for a worker, rebuilt when a registration changes.

    Instances are shared by concurrent activities so their rate limiters and sessions are shared.
    """

    def __init__(self, store: RegistrationStore, budget: SharedBudget | None = None) -> None:
        self.store = store
        self.budget = budget
        self._items: dict[str, tuple[int, Connector]] = {}
        self._lock = asyncio.Lock()

    async def get(self, name: str) -> Connector:
        row = await asyncio.to_thread(self.store.get_connector, name)
        if row is None:
            raise ConfigurationError(f"no connector named {name!r} is registered")
        async with self._lock:
            cached = self._items.get(name)
            if cached and cached[0] == row.version:
                return cached[1]
            if cached:
                await cached[1].aclose()
            secrets = self.store.connector_secrets(row)
            instance = connector_class(row.kind).from_config(name, row.settings, secrets)
            if self.budget is not None:
                share_limits(instance, self.budget)
            self._items[name] = (row.version, instance)
            return instance

    async def aclose(self) -> None:
        for _, instance in self._items.values():
            await instance.aclose()
        self._items.clear()

"""Settings from the environment (``TONGDAO_*``), with embedded defaults.

With nothing set, everything runs on one machine under the state directory (``./var`` or
``$TONGDAO_HOME``): the Temporal dev server with SQLite persistence and the hub store in SQLite.
Setting ``TONGDAO_TEMPORAL_ADDRESS`` and ``TONGDAO_DATABASE_URL`` points the same code at a
Temporal cluster and PostgreSQL.

One state directory is one hub with its own engine: the embedded Temporal server records itself in
``$TONGDAO_HOME/temporal.json`` and a second hub (another ``TONGDAO_HOME``) finding the port held
by it is refused instead of silently joining it (see ``worker/embedded.py``); give it its own
``TONGDAO_TEMPORAL_PORT``/``TONGDAO_TEMPORAL_UI_PORT``. Hubs that share one Temporal on purpose
(a cluster, or ``TONGDAO_TEMPORAL_ADDRESS`` at another hub's server) must differ in
``TONGDAO_TASK_QUEUE`` (or ``TONGDAO_TEMPORAL_NAMESPACE``), or their workers take each other's work.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TONGDAO_", extra="ignore")

    home: Path = Field(Path("var"), description="state directory for the embedded runtime")
    temporal_address: str | None = Field(None, description="host:port of an external Temporal; unset = embedded")
    temporal_namespace: str = Field("default", description="Temporal namespace (TONGDAO_TEMPORAL_NAMESPACE); "
                                    "the embedded server creates it")
    temporal_port: int = Field(7233, description="embedded server's frontend port; one per state directory")
    temporal_ui_port: int = Field(8233, description="embedded server's Web UI port")
    database_url: str | None = Field(None, description="SQLAlchemy URL; unset = SQLite under home")
    api_host: str = "127.0.0.1"
    api_port: int = 8700
    api_base_url: str | None = Field(None, description="public base URL of the API, for callback URLs")
    task_queue: str = Field("tongdao", description="the worker's task queue (TONGDAO_TASK_QUEUE); hubs sharing "
                            "one Temporal namespace need different ones")
    max_push_bytes: int = Field(2_000_000, gt=0, description="largest body POST /hooks/{connector} accepts")
    secret_key: SecretStr | None = Field(None, description="Fernet key ring sealing connector secrets and personal "
                                         "data: comma-separated keys, the first encrypts, all decrypt (rotation)")
    secret_key_file: Path | None = Field(None, description="file holding the key ring instead (one key a line), "
                                         "outside the state directory in production; neither = <home>/secret.key")
    personal_data_retention_days: int = Field(90, ge=1, description="days a finished order keeps its receiver and "
                                              "buyer data before `tongdao privacy purge` removes them (PIPL: the "
                                              "shortest time needed)")
    payload_keys: SecretStr | None = Field(None, description="keys encrypting Temporal payloads: comma-separated "
                                           "id:base64key pairs, the first encrypts, all decrypt (rotation)")
    payload_keys_file: Path | None = Field(None, description="file of id:base64key lines instead (outside the state "
                                           "directory); neither set = <home>/payload.keys, generated (dev only)")
    codec_cors_origins: str | None = Field(None, description="comma-separated origins (the Temporal Web UI's) allowed "
                                           "to call /codec/*; unset = http://localhost and 127.0.0.1 on the UI port")
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    actor: str = Field("", description="who is making changes (recorded on registrations); default $USER")

    @property
    def embedded(self) -> bool:
        return not self.temporal_address

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def temporal_db(self) -> Path:
        return (self.home / "temporal.db").resolve()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'tongdao.db').resolve()}"

    @property
    def api_url(self) -> str:
        return (self.api_base_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def codec_origins(self) -> list[str]:
        if self.codec_cors_origins is not None:
            return [o.strip().rstrip("/") for o in self.codec_cors_origins.split(",") if o.strip()]
        return [f"http://localhost:{self.temporal_ui_port}", f"http://127.0.0.1:{self.temporal_ui_port}"]

    def callback_url(self, connector_name: str) -> str:
        return f"{self.api_url}/hooks/{connector_name}"

    def ensure_home(self) -> Path:
        """The state directory, made (or tightened to) 0700: it holds the order history, the store's
        personal data and the secret key, none of which other users of the machine may read."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            if self.home.stat().st_mode & 0o077:
                self.home.chmod(0o700)
        except OSError:  # not ours (a shared mount): its owner decides
            pass
        return self.home


@lru_cache
def get_settings() -> Settings:
    return Settings()

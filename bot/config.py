"""Settings from the environment (prefix PIX2CHAT_) or a .env file; read once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from editor.params import EditParams


class Settings(BaseSettings):
    """Everything configurable. Tokens are SecretStr so they never show up in logs or reprs."""

    model_config = SettingsConfigDict(env_prefix="PIX2CHAT_", env_file=".env", extra="ignore")

    # Frontends
    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org/bot"
    telegram_file_url: str = "https://api.telegram.org/file/bot"
    telegram_poll_timeout: int = Field(default=30, ge=0, description="getUpdates long-poll seconds")
    telegram_webhook_url: str | None = Field(
        default=None, description="public HTTPS URL for webhook mode; polling when unset"
    )
    telegram_webhook_listen: str = "0.0.0.0"
    telegram_webhook_port: int = 8443
    telegram_webhook_secret: SecretStr | None = None
    discord_token: SecretStr | None = None
    discord_guild_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, description="guilds to sync slash commands to at once (comma list)"
    )
    discord_channel_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="channels where plain messages are instructions; empty = DMs and mentions",
    )

    # Storage
    data_dir: Path = Path("data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite file in data_dir"
    )
    database_wait_s: float = Field(
        default=60.0, ge=0, description="at start-up, retry an unreachable database this long"
    )
    migrate_on_start: bool = Field(
        default=True, description="false: a process finding an older schema waits for migrate"
    )

    # Model
    model: str = "timbrooks/instruct-pix2pix"
    lora: str | None = None
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    safety_checker: bool = False

    # Defaults for new conversations (users may change theirs with /settings)
    default_steps: int = 20
    default_guidance_scale: float = 7.5
    default_image_guidance_scale: float = 1.5
    default_resolution: int = 512

    # Scheduler and admission
    max_batch: int = 4
    max_wait_ms: int = 20
    max_pending_per_user: int = 3
    rate_burst: int = 5
    rate_per_minute: float = 6.0
    daily_quota: int = 200
    queue_cap: int = 200
    max_attempts: int = 3

    # Uploads
    max_upload_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_stored_pixels: int = Field(
        default=24_000_000,
        ge=1_000_000,
        description="uploads above this many pixels are downscaled once, and the reply says so",
    )

    # Develop (issue 14): each model result is carried onto its full-resolution parent
    develop: bool = Field(
        default=True,
        description="on|off; off: store the model's working-resolution output as the result",
    )

    # Recipes (issue 17)
    max_recipe_photos: int = Field(
        default=20, ge=1, description="photos one chat batch of a recipe takes; more are left out"
    )

    # Web chat (issue 5)
    web_enabled: bool = Field(
        default=False, description="start the web chat even when a bot token is set"
    )
    web_host: str = Field(default="127.0.0.1", description="address the web chat listens on")
    web_port: int = Field(default=8000, ge=0, le=65535, description="0 picks a free port")
    web_password: SecretStr | None = Field(
        default=None, description="required when web_host is not a loopback address"
    )

    # Scaling out: PostgreSQL + procrastinate GPU workers (issue 6)
    worker: Literal["embedded", "remote"] = Field(
        default="embedded",
        description="remote: this process only queues edits; `pix2chat worker` runs them",
    )
    image_store: Literal["auto", "database", "files"] = Field(
        default="auto", description="auto: in the database on PostgreSQL, files on SQLite"
    )
    worker_concurrency: int = Field(
        default=4, ge=1, description="jobs a worker runs at once, and so its largest batch"
    )
    worker_gpu: str | None = Field(
        default=None, description="GPU index a worker uses (sets CUDA_VISIBLE_DEVICES)"
    )
    worker_heartbeat_s: float = Field(default=5.0, gt=0)
    stalled_timeout_s: float = Field(
        default=30.0, gt=0, description="a worker silent this long is dead; its jobs run elsewhere"
    )
    worker_shutdown_timeout_s: float = Field(
        default=300.0, ge=0, description="on SIGTERM, wait for running edits, then hand them back"
    )

    # Speed (issue 8): GPU worker options, measured by `pix2chat bench model`; see
    # docs/BENCHMARKS.md. Defaults are the ones that never change a picture (SDPA, fp16 on CUDA).
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        default="auto", description="auto = float16 on CUDA, float32 elsewhere"
    )
    attention: Literal["sdpa", "classic"] = "sdpa"
    channels_last: bool = False
    fuse_qkv: bool = False
    compile: Literal["off", "unet", "unet+vae"] = Field(
        default="off", description="torch.compile; all shapes compiled at start-up"
    )
    compile_mode: Literal["default", "max-autotune"] = "default"
    cuda_graphs: bool = Field(default=False, description="needs compile; CUDA only")
    compile_sizes: str = Field(
        default="512x512,512x384,384x512", description="WIDTHxHEIGHT list compiled at start-up"
    )
    compile_batch_sizes: str = Field(default="1,2,4", description="batch sizes compiled")
    preview: Literal["off", "taesd"] = "off"
    preview_model: str = "madebyollin/taesd"
    preview_every: int = Field(default=5, ge=1)

    @field_validator("discord_guild_ids", "discord_channel_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """`PIX2CHAT_DISCORD_GUILD_IDS=123,456` as well as a JSON list."""
        if isinstance(value, str):
            parts = value.strip().removeprefix("[").removesuffix("]").replace(" ", "")
            return [int(part) for part in parts.split(",") if part]
        return value

    def resolved_database_url(self) -> str:
        """The configured URL, or a SQLite file inside the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'pix2chat.db').resolve()}"

    def default_params(self) -> EditParams:
        return EditParams(
            num_inference_steps=self.default_steps,
            guidance_scale=self.default_guidance_scale,
            image_guidance_scale=self.default_image_guidance_scale,
            resolution=self.default_resolution,
        )

    def has_frontend(self) -> bool:
        return self.telegram_token is not None or self.discord_token is not None

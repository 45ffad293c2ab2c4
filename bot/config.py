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

    # Model families and several models (issue 19); see docs/ARCHITECTURE.md "Model families"
    models: str | None = Field(
        default=None,
        description="name=hub id or folder, comma list; users pick with /model; "
        "PIX2CHAT_MODEL (or the first) is the default",
    )
    gpu_memory_gb: float | None = Field(
        default=None, gt=0, description="loaded models' weights stay under this (LRU unloads)"
    )
    worker_model: str | None = Field(
        default=None,
        description="`pix2chat worker --model`: serve this PIX2CHAT_MODELS name's queue only",
    )
    offload: bool = Field(
        default=False, description="model CPU offload for the families beside IP2P (slower)"
    )

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
    # Regions (/keep, /only; issue 14): text-prompted masks from CLIPSeg, loaded on first use
    segmenter_model: str = Field(
        default="CIDAS/clipseg-rd64-refined",
        description="CLIPSeg hub id or local folder for /keep and /only masks",
    )

    # Choice in every turn (issue 15): the scorer that ranks variations and best-of-N candidates
    scorer_model: str = Field(
        default="openai/clip-vit-large-patch14",
        description="CLIP hub id or local folder, loaded on first use; empty: candidates unranked",
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

    # Finishing tools (issue 18): /upscale, /cutout, /white and provenance of delivered files
    upscaler_model: str = Field(
        default="ai-forever/Real-ESRGAN:RealESRGAN_x4.pth",
        description="super-resolution weights spandrel detects: a local file or owner/repo:file",
    )
    matting_model: str = Field(
        default="birefnet-general",
        description="cut-out model: a local .onnx file or a rembg model name",
    )
    provenance: bool = Field(
        default=True,
        description="on|off: C2PA manifest and invisible watermark on Full resolution files",
    )
    c2pa_cert: Path | None = Field(
        default=None,
        description="PEM certificate chain that signs manifests; default a self-signed one "
        "made once in data_dir/provenance",
    )
    c2pa_key: Path | None = Field(default=None, description="the PEM private key of c2pa_cert")
    # Running a public bot (issue 16): access control, metrics, structured logs
    access: Literal["open", "allowlist"] = Field(
        default="open", description="allowlist: only admins and allowed users, chats, servers"
    )
    admins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma list of telegram:<user id>, discord:<user id>"
    )
    refusal_silence_s: float = Field(
        default=600.0, ge=0, description="after telling a refused user why, stay silent this long"
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Prometheus /metrics port; unset: off"
    )
    metrics_host: str = Field(default="127.0.0.1", description="address /metrics listens on")
    metrics_refresh_s: float = Field(
        default=5.0, gt=0, description="how often waiting and running edits are counted"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one object a line"
    )

    @field_validator("admins", mode="before")
    @classmethod
    def _admin_list(cls, value: Any) -> Any:
        """`PIX2CHAT_ADMINS=telegram:1,discord:2`; each entry must name its platform."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        for entry in value:
            platform, _, user_id = str(entry).partition(":")
            if platform not in ("telegram", "discord") or not user_id.strip().isdigit():
                raise ValueError(
                    f"{entry!r} is not an admin: write telegram:<user id> or discord:<user id>"
                )
        return [str(entry).strip() for entry in value]

    @field_validator("discord_guild_ids", "discord_channel_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """`PIX2CHAT_DISCORD_GUILD_IDS=123,456` as well as a JSON list."""
        if isinstance(value, str):
            parts = value.strip().removeprefix("[").removesuffix("]").replace(" ", "")
            return [int(part) for part in parts.split(",") if part]
        return value

    def model_choices(self) -> dict[str, str]:
        """PIX2CHAT_MODELS as name -> hub id or folder (empty: one model, PIX2CHAT_MODEL)."""
        return parse_models(self.models or "")

    def default_model_name(self) -> str:
        """The model of users who chose none: PIX2CHAT_MODEL's entry, else the first one."""
        choices = self.model_choices()
        for name, model in choices.items():
            if self.model in (name, model):
                return name
        return next(iter(choices), "")

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
            model=self.default_model_name(),
        )

    def c2pa_paths(self) -> tuple[Path, Path]:
        """The signing certificate chain and key: configured, or made once in the data folder."""
        folder = self.data_dir / "provenance"
        return self.c2pa_cert or folder / "c2pa-cert.pem", self.c2pa_key or folder / "c2pa-key.pem"

    def has_frontend(self) -> bool:
        return self.telegram_token is not None or self.discord_token is not None


MODEL_NAME_CHARACTERS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


def parse_models(value: str) -> dict[str, str]:
    """`ip2p=timbrooks/instruct-pix2pix, kontext=/models/kontext` as an ordered dict.

    Raises:
        ValueError: an entry without `=`, a name outside a-z 0-9 . _ -, or a name twice.
    """
    choices: dict[str, str] = {}
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        name, separator, model = (text.strip() for text in entry.partition("="))
        if not separator or not name or not model:
            raise ValueError(f"PIX2CHAT_MODELS entry {entry!r} is not name=hub id or folder")
        if not set(name) <= MODEL_NAME_CHARACTERS:
            raise ValueError(f"PIX2CHAT_MODELS name {name!r}: use only a-z, 0-9, '.', '_', '-'")
        if name in choices:
            raise ValueError(f"PIX2CHAT_MODELS names {name!r} twice")
        choices[name] = model
    return choices

"""The one validated settings object, built from the environment and an optional `.env` file."""

from __future__ import annotations

from datetime import date, datetime
from email.utils import parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATABASE_URL = "sqlite:///billprocess.db"
SUPPORTED_DATABASES = ("sqlite", "postgresql")
MIN_OPERATOR_TOKEN_LENGTH = 32


class SettingsError(Exception):
    """A configuration value is missing or wrong; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    bills_channel: str | None = None
    timezone: str = "UTC"
    smtp_url: SecretStr | None = None
    mail_from: str = "billing@example.com"
    mail_dir: Path = Path("mail")
    port: int = Field(default=3000, ge=1, le=65535)
    log_level: str = "INFO"
    link_by_email: bool = False
    bcrypt_rounds: int = Field(default=12, ge=4, le=31)
    # Scheduled work (crontab syntax in TIMEZONE; empty disables).
    generate_cron: str = "0 9 1 * *"
    reminder_cron: str = "0 9 * * 1-5"
    reminder_after_days: int = Field(default=3, ge=0, le=365)
    # Delivery of the outbox.
    delivery_threads: int = Field(default=4, ge=1, le=64)
    slack_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    outbox_lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    delivery_max_backoff: float = Field(default=60.0, ge=0.1, le=3600)
    delivery_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    progress_seconds: float = Field(default=2.0, gt=0, le=600)  # how often a month's summary shows progress
    # The approval policy file (bot/approval.py); without the default file, the customers' usual steps alone.
    approval_policy: Path = Path("approval-policy.yml")
    # The JSON API: the operators' bearer token (accounts and customers), and how long a login lasts.
    api_operator_token: SecretStr | None = None
    session_hours: float = Field(default=12.0, gt=0, le=24 * 366)
    # The address of the reverse proxy in front of `serve`: requests through it are from X-Forwarded-For's
    # address (login throttling counts per address).
    trusted_proxy: str | None = None
    # Invoices and credit notes (bot/invoices.py, bot/pdf.py).
    invoice_number_format: str = "BP-{year}-{seq:06d}"
    credit_note_number_format: str = "CN-{year}-{seq:06d}"
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    issuer_name: str = ""
    issuer_address: str = ""  # lines separated by newlines (or the two characters \n)
    issuer_tax_id: str = ""
    issuer_email: str = ""
    paper_size: str = "A4"

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("is not a database URL (e.g. sqlite:///billprocess.db)") from None
        if url.get_backend_name() not in SUPPORTED_DATABASES:
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            raise ValueError("must name a SQLite file (sqlite:///billprocess.db); an in-memory database keeps nothing")
        if url.get_backend_name() == "postgresql" and url.get_driver_name() not in ("psycopg", "postgresql"):
            raise ValueError("must use the psycopg driver (postgresql+psycopg://...)")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _usable_smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        from bot.mailer import (
            parse_smtp_url,  # the mailer owns the format; it imports this module
        )

        try:
            parse_smtp_url(value.get_secret_value())
        except SettingsError as error:
            raise ValueError(str(error).removeprefix("SMTP_URL ")) from None
        return value

    @field_validator("api_operator_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value().strip()) < MIN_OPERATOR_TOKEN_LENGTH:
            raise ValueError(
                f"must be at least {MIN_OPERATOR_TOKEN_LENGTH} characters"
                " (e.g. the output of `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return SecretStr(value.get_secret_value().strip())

    @field_validator("mail_from", "issuer_email")
    @classmethod
    def _an_address(cls, value: str, info) -> str:
        from bot.parsing import is_email  # parsing reaches this module through the billing rules

        if (value or info.field_name == "mail_from") and not is_email(parseaddr(value)[1]):
            raise ValueError(f"{value!r} is not an email address (e.g. billing@example.com)")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _a_web_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL such as https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. UTC, Europe/Berlin)") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("generate_cron", "reminder_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        value = value.strip()
        if value:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value)
            except ValueError as error:
                raise ValueError(f"is not a crontab expression such as '0 9 1 * *' ({error})") from None
        return value

    @field_validator("invoice_number_format", "credit_note_number_format")
    @classmethod
    def _number_format(cls, value: str) -> str:
        from bot.invoices import (
            check_number_format,  # the invoices module owns the format; it imports this one
        )

        check_number_format(value)
        return value

    @field_validator("issuer_name", "issuer_address", "issuer_tax_id", "issuer_email")
    @classmethod
    def _issuer_text(cls, value: str) -> str:
        return value.replace("\\n", "\n").strip()

    @field_validator("paper_size")
    @classmethod
    def _known_paper(cls, value: str) -> str:
        sizes = {"a4": "A4", "letter": "Letter"}
        if value.strip().lower() not in sizes:
            raise ValueError("must be A4 or Letter")
        return sizes[value.strip().lower()]

    @model_validator(mode="after")
    def _invoices_name_their_issuer(self) -> Settings:
        if self.invoice_number_format.format(year=2026, seq=1) == self.credit_note_number_format.format(
            year=2026, seq=1
        ):
            raise ValueError("CREDIT_NOTE_NUMBER_FORMAT must differ from INVOICE_NUMBER_FORMAT")
        if self.smtp_url is not None:
            # Emails sent to customers carry invoices, which must say who issues them.
            missing = [
                name.upper()
                for name in ("issuer_name", "issuer_address", "issuer_tax_id", "issuer_email")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(
                    f"{', '.join(missing)} must be set when SMTP_URL is set: invoices emailed to customers name"
                    " their issuer"
                )
        return self

    @property
    def slack_configured(self) -> bool:
        return self.slack_bot_token is not None

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with PostgreSQL pinned to psycopg 3, whichever spelling was given."""
        url = make_url(self.database_url)
        if url.get_backend_name() == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return url.render_as_string(hide_password=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def today(self) -> date:
        """Today's date in TIMEZONE."""
        return datetime.now(self.zone).date()


def load_settings(**overrides) -> Settings:
    """Build the settings, turning a validation failure into one line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a check of several settings together names them itself
            raise SettingsError(message) from None
        raise SettingsError(f"{str(error['loc'][0]).upper()} {message}") from None

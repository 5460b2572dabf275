"""Every setting of the service, read from CDP_* environment variables."""

from datetime import timedelta

import phonenumbers
from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDP_", frozen=True)

    database_url: str = "sqlite:///./cdp.db"
    session_idle_timeout: timedelta = timedelta(hours=24)
    session_open_window: timedelta = timedelta(seconds=5)
    phone_region: str = "RU"

    @field_validator("session_idle_timeout", "session_open_window", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        """A bare number is seconds; ISO 8601 ("PT24H") and "HH:MM:SS" work as well."""
        if isinstance(value, str):
            try:
                return timedelta(seconds=float(value))
            except ValueError:
                return value
        return value

    @field_validator("session_idle_timeout", "session_open_window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"must be a positive duration, got {value}")
        return value

    @field_validator("phone_region")
    @classmethod
    def _region(cls, value: str) -> str:
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region code phonenumbers knows (e.g. RU, KZ)")
        return region

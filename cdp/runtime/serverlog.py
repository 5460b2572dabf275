"""How `cdp serve` writes its log: lines of text, or JSON lines (CDP_LOG_FORMAT=json).

A JSON line holds `time`, `level`, `logger` and `message`, and the fields its record
carries (`extra={"fields": {...}}`): a request's method, path, status and so on. A record
with an exception adds its type and traceback. What a line says is up to the code that
logs it: no phone number, message text or secret is written in full by either format.
"""

import json
import logging
from typing import Any, Final, Literal

from cdp.times import iso, utc

TEXT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_BASE: Final = ("time", "level", "logger", "message")


class JSONLines(logging.Formatter):
    """A record as one line of JSON: control characters in it are escaped."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": iso(utc(int(record.created * 1000))),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line |= {name: value for name, value in fields.items() if name not in _BASE}
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(kind: Literal["text", "json"]) -> None:
    """Every record of level INFO and above, from cdp and from uvicorn, to standard error."""
    handler = logging.StreamHandler()
    handler.setFormatter(JSONLines() if kind == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])

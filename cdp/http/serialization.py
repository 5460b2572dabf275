"""How answers become JSON: pydantic schemas as they are, logged JSON text embedded unparsed."""

from collections.abc import Callable
from typing import Any

import msgspec
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.serialization import encode_json, get_serializer
from litestar.typing import FieldDefinition
from pydantic import BaseModel

from cdp.http.schemas import RawJSON


def _dump(model: BaseModel) -> dict[str, Any]:
    # Python mode leaves RawJSON to the encoder below; JSON mode would have to parse it.
    return model.model_dump(mode="python")


TYPE_ENCODERS: dict[Any, Callable[[Any], Any]] = {
    BaseModel: _dump,
    RawJSON: lambda raw: msgspec.Raw(raw.text.encode()),
}


def to_json(value: Any) -> bytes:
    """`value` as JSON, exactly as an answer that returns it holds it."""
    return encode_json(value, get_serializer(TYPE_ENCODERS))


class RawJSONSchema(OpenAPISchemaPlugin):
    """RawJSON is documented as the JSON object it holds."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return value is RawJSON

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        return Schema(type=OpenAPIType.OBJECT, description="JSON, exactly as it was received")

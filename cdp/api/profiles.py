"""GET /profiles: customers, each with the chats they own across messengers."""

from litestar import Controller, get
from litestar.exceptions import NotFoundException, ValidationException
from sqlalchemy import Connection

from cdp import queries
from cdp.api.service import Service
from cdp.schemas import Items, Profile


class ProfileController(Controller):
    path = "/profiles"
    tags = ["profiles"]

    @get(sync_to_thread=True)
    def by_phone(self, phone: str, connection: Connection, service: Service) -> Items[Profile]:
        """Profiles owning a chat with this phone number, in any common notation."""
        try:
            found = queries.profiles_by_phone(connection, phone, service.settings.phone_region)
        except ValueError as error:
            raise ValidationException(str(error), extra=[{"key": "phone", "message": str(error)}]) from None
        return Items[Profile](items=found)

    @get("/{uuid:str}", sync_to_thread=True)
    def one(self, uuid: str, connection: Connection) -> Profile:
        found = queries.profile(connection, uuid)
        if found is None:
            raise NotFoundException(f"no profile {uuid!r}")
        return found

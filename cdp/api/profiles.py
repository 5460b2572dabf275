"""GET /profiles: customers, each with the chats they own across messengers."""

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery
from sqlalchemy import Connection

from cdp import queries
from cdp.api.service import Service
from cdp.schemas import Items, Profile


class ProfileController(Controller):
    path = "/profiles"
    tags = ["profiles"]

    @get(sync_to_thread=True)
    def by_phone(
        self,
        phone: FromQuery[str],
        connection: NamedDependency[Connection],
        service: NamedDependency[Service],
    ) -> Items[Profile]:
        """Profiles owning a chat with this phone number, in any common notation."""
        try:
            found = queries.profiles_by_phone(connection, phone, service.settings.phone_region)
        except ValueError as error:
            raise ValidationException(
                str(error), extra=[{"key": "phone", "message": str(error)}]
            ) from None
        return Items[Profile](items=found)

    @get("/{uuid:str}", sync_to_thread=True)
    def one(self, uuid: FromPath[str], connection: NamedDependency[Connection]) -> Profile:
        found = queries.profile(connection, uuid)
        if found is None:
            raise NotFoundException(f"no profile {uuid!r}")
        return found

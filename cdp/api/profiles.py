"""GET /profiles: customers, each with the chats they own across messengers."""

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery

from cdp import queries
from cdp.api import auth
from cdp.api.docs import not_found
from cdp.api.params import After, Limit
from cdp.api.service import Service
from cdp.phones import normalize
from cdp.queries import Listing
from cdp.schemas import Page, Profile


class ProfileController(Controller):
    path = "/profiles"
    guards = [auth.reader]
    tags = ["profiles"]

    @get(summary="Profiles by phone number")
    async def by_phone(
        self,
        phone: FromQuery[str],
        service: NamedDependency[Service],
        after: After = None,
        limit: Limit = 100,
    ) -> Page[Profile]:
        """Profiles owning a chat with this phone number, in any common notation."""
        number = normalize(phone, service.settings.phone_region)
        if number is None:
            message = f"{phone!r} is not a phone number"
            raise ValidationException(message, extra=[{"key": "phone", "message": message}])
        return await service.reads.query(queries.profiles_by_phone, number, Listing(after, limit))

    @get(
        "/{uuid:str}",
        summary="A profile",
        responses=not_found("no profile '5d2c1e0a-7b7f-4c1e-8d5e-2a9b4f6c8e01'"),
    )
    async def one(self, uuid: FromPath[str], service: NamedDependency[Service]) -> Profile:
        """A customer: the chats they own across messengers, their phones and names."""
        found = await service.reads.query(queries.profile, uuid)
        if found is None:
            raise NotFoundException(f"no profile {uuid!r}")
        return found

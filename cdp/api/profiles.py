"""GET /profiles: customers, each with the chats they own across messengers; and erasure."""

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery

from cdp import erasure, queries
from cdp.api import auth
from cdp.api.docs import not_found
from cdp.api.params import After, Limit
from cdp.api.service import Service
from cdp.phones import normalize
from cdp.queries import Listing
from cdp.schemas import Erasure, Page, Profile
from cdp.times import utc
from cdp.webhook import identifier_problem


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
        source: FromQuery[str | None] = None,
    ) -> Page[Profile]:
        """Profiles owning a chat with this phone number, in any common notation; `source`
        keeps those of one source."""
        number = normalize(phone, service.settings.phone_region)
        if number is None:
            message = f"{phone!r} is not a phone number"
            raise ValidationException(message, extra=[{"key": "phone", "message": message}])
        return await service.reads.query(
            queries.profiles_by_phone, number, Listing(after, limit), source
        )

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

    @post(
        "/{uuid:str}/erase",
        status_code=200,
        summary="Erase a customer's personal data",
        guards=[auth.admin],
    )
    async def erase(
        self,
        uuid: FromPath[str],
        service: NamedDependency[Service],
        suppress: FromQuery[bool] = False,
    ) -> Erasure:
        """Destroy the keys that seal the profile's personal data (name, phone, avatar,
        message texts, file links, session titles) in the log and in every chat it was
        named on, and fold those chats again: what happened, when, and which team and
        operator handled it stays. With `suppress`, its later webhooks are refused (410)
        and counted. Erasing again is harmless; a profile not seen yet can be suppressed."""
        if (problem := identifier_problem(uuid)) is not None:
            raise ValidationException(problem, extra=[{"key": "uuid", "message": problem}])
        done = await service.rebuilds.run(
            lambda: erasure.erase(
                service.engine, service.keystore, service.projectors, uuid, suppress=suppress
            )
        )
        return Erasure(
            profile_uuid=done.profile_uuid,
            erased_at=utc(done.erased_at),
            chats=done.chats,
            keys_destroyed=done.keys_destroyed,
            suppressed=done.suppressed,
        )

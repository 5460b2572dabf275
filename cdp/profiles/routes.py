"""GET /profiles: customers, each with the chats they own across messengers; and erasure."""

from typing import Annotated, Final

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery, QueryParameter

from cdp.access import auth
from cdp.http.openapi import not_found, problem
from cdp.http.params import After, Limit
from cdp.http.schemas import Page
from cdp.log.webhook import identifier_problem
from cdp.paging import Listing
from cdp.privacy import erasure
from cdp.privacy.schemas import Erasure
from cdp.profiles import queries
from cdp.profiles.names import fold_name
from cdp.profiles.phones import normalize
from cdp.profiles.schemas import Profile, ProfileChat
from cdp.runtime.service import Service
from cdp.times import utc

Phone = Annotated[
    str | None,
    QueryParameter(description="A phone number, in any common notation: `8 (999) 123-45-67`."),
]
NameStart = Annotated[
    str | None,
    QueryParameter(
        description=(
            "The start of a customer's name, whatever its case or the dots of its ё: `иван` "
            "finds `Иван Петров` and `елкин` finds `Ёлкин`; `петров` does not find `Иван Петров`."
        ),
    ),
]


_ERASING = {
    409: problem(
        "The profile is being erased: its chats are erased a few at a time",
        {
            "detail": "profile '5d2c1e0a-7b7f-4c1e-8d5e-2a9b4f6c8e01' is being erased: "
            "ask again once its erasure ended"
        },
    )
}


class ProfileController(Controller):
    path = "/profiles"
    guards = [auth.reader]
    tags = ["profiles"]

    @get(summary="Profiles by phone number or name")
    async def search(
        self,
        service: NamedDependency[Service],
        phone: Phone = None,
        name: NameStart = None,
        after: After = None,
        limit: Limit = 100,
        source: FromQuery[str | None] = None,
    ) -> Page[Profile]:
        """Profiles owning a chat with this phone number, in any common notation, or whose
        name starts with this text, whatever its case: give exactly one of `phone` and
        `name`. `source` keeps those of one source. Each holds its first 10 chats and, in
        `chats_next`, where GET /profiles/{uuid}/chats goes on from."""
        listing = Listing(after, limit)
        if (phone is None) == (name is None):
            message = "give exactly one of phone and name"
            extra = [{"key": key, "message": message} for key in ("phone", "name")]
            raise ValidationException(message, extra=extra)
        if name is not None:
            if fold_name(name) is None:
                message = f"{name!r} holds nothing to search for: give the start of a name"
                raise ValidationException(message, extra=[{"key": "name", "message": message}])
            return await service.reads.query(
                queries.profiles_by_name, name, listing, source, keystore=service.keystore
            )
        number = normalize(phone, service.settings.phone_region)
        if number is None:
            message = f"{phone!r} is not a phone number"
            raise ValidationException(message, extra=[{"key": "phone", "message": message}])
        return await service.reads.query(
            queries.profiles_by_phone, number, listing, source, keystore=service.keystore
        )

    @get(
        "/{uuid:str}",
        summary="A profile",
        responses={**not_found("no profile '5d2c1e0a-7b7f-4c1e-8d5e-2a9b4f6c8e01'"), **_ERASING},
    )
    async def one(
        self, uuid: FromPath[str], service: NamedDependency[Service], limit: Limit = 100
    ) -> Profile:
        """A customer: their phones and names (those of their 100 newest chats), when they
        were first and last named, the profile they were merged into; then the first
        `limit` chats they own across messengers, in the order they were first seen, and in
        `chats_next` where GET /profiles/{uuid}/chats goes on from (null: there are no more).
        While the profile is being erased (its chats a few at a time), `409`."""
        found = await service.reads.query(queries.profile, uuid, limit, keystore=service.keystore)
        if found is None:
            raise NotFoundException(f"no profile {uuid!r}")
        return found

    @get(
        "/{uuid:str}/chats",
        summary="A profile's chats",
        responses={**not_found("no profile '5d2c1e0a-7b7f-4c1e-8d5e-2a9b4f6c8e01'"), **_ERASING},
    )
    async def chats(
        self,
        uuid: FromPath[str],
        service: NamedDependency[Service],
        after: After = None,
        limit: Limit = 100,
    ) -> Page[ProfileChat]:
        """The chats a customer owns, in the order they were first seen: a page at a time,
        from the `chats_next` of the profile or the `next` of the page before. While the
        profile is being erased, `409`."""
        listing = Listing(after, limit)
        found = await service.reads.query(
            queries.owned_chats, uuid, listing, keystore=service.keystore
        )
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
        and counted. Erasing again is harmless, and finishes an erasure stopped midway; a
        profile not seen yet can be suppressed. It works in steps of a few chats each,
        webhooks taken between two, and answers once the last one is done."""
        if (problem := identifier_problem(uuid)) is not None:
            raise ValidationException(problem, extra=[{"key": "uuid", "message": problem}])
        done = await service.rebuilds.run(
            lambda: erasure.erase(
                service.engine,
                service.keystore,
                service.projectors,
                uuid,
                suppress=suppress,
                between=service.between,
            )
        )
        return Erasure(
            profile_uuid=done.profile_uuid,
            erased_at=utc(done.erased_at),
            chats=done.chats,
            keys_destroyed=done.keys_destroyed,
            suppressed=done.suppressed,
        )


ROUTES: Final = (ProfileController,)  # see cdp.capabilities

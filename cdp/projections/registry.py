"""Every projector, in the order they are fed: a new read model is added here."""

from cdp.conversations.fold import Rules
from cdp.conversations.projector import ChatsProjector
from cdp.profiles.projector import ProfilesProjector
from cdp.projections.runner import Projector
from cdp.settings import Settings
from cdp.teams.projector import TeamsProjector


def projectors(settings: Settings) -> list[Projector]:
    rules = Rules.of(settings.session_idle_timeout, settings.session_open_window)
    chats = ChatsProjector(rules, settings.phone_region)
    return [chats, ProfilesProjector(), TeamsProjector()]

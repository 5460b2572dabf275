"""Every projector, in the order they are fed: the `create(settings)` of each capability
folder's projector module (see cdp.capabilities), in the folders' order, but that one
that reads another's tables (see Projector.reads) comes after it."""

from cdp import capabilities
from cdp.projections.runner import Projector
from cdp.settings import Settings


def projectors(settings: Settings) -> list[Projector]:
    made: list[Projector] = [
        module.create(settings) for module in capabilities.modules("projector")
    ]
    fed: list[Projector] = []
    while made:
        ready = [p for p in made if set(p.reads) <= {f.name for f in fed}]
        if not ready:  # a cycle, or a name no projector has
            waiting = "; ".join(f"{p.name} reads {', '.join(p.reads)}" for p in made)
            raise RuntimeError(f"no order feeds each projector after those it reads: {waiting}")
        fed.append(ready[0])
        made.remove(ready[0])
    return fed

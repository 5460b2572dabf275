"""cdp: an event-sourced customer-data store for Fasttrack chat-center webhooks."""

from typing import Final

# The name it is installed under (pip show, importlib.metadata): "cdp" on the package index
# is another project. The command and this package are cdp.
DISTRIBUTION: Final = "fasttrack-cdp"

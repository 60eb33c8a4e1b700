"""How a delivery attempt can fail, which decides what happens to the item."""


class TransientError(Exception):
    """The destination is unreachable or refused for now (offline, 5xx, credentials, throttling): keep the item,
    back off and try again."""


class ItemError(Exception):
    """This item can never be delivered as it is (e.g. refused as too large): drop it and report it."""


class Preempted(Exception):
    """A more important item is waiting: stop between multipart parts (progress is saved) and take it first."""


class Throttled(TransientError):
    """The destination asked us to slow down (throughput exceeded): keep the item and back off; the link is up."""

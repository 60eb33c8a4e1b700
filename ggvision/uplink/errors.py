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


class TooLarge(TransientError):
    """The destination takes no message this big for now: the runtime's offline spool is smaller than the batch
    (gglocal: "is larger than the whole spool"; the nucleus: "Message is larger than the size of message spool").
    Smaller batches go; a single item this big never can (the engine refuses it then, reported)."""


_TOO_LARGE = ("larger than the whole spool", "larger than the size of message spool")


def too_large(text: str) -> bool:
    """Whether a destination's refusal says the message is bigger than it can ever take as one."""
    low = text.lower()
    return any(t in low for t in _TOO_LARGE)

"""What one delivery attempt carries: the claim (what to send, where) and its outcome."""
from dataclasses import dataclass


@dataclass
class Claim:
    """What one attempt sends, read in the claim's transaction (no ORM object outlives it)."""
    delivery_id: int
    token: str
    attempt: int
    channel: str
    target: str
    body: str
    secret: str | None


@dataclass
class Outcome:
    delivered: bool
    response_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None

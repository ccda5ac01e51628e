"""The API governor: every request to Opinion is queued by priority, paced by a token bucket and retried."""

from whaled.governor.governor import Governor
from whaled.governor.opinion import REQUEST_ERRORS, GovernedOpinion
from whaled.governor.priority import Priority
from whaled.governor.queue import GovernorClosedError, GovernorDeadlineError
from whaled.governor.stats import GovernorSnapshot, GovernorState

__all__ = [
    "REQUEST_ERRORS",
    "GovernedOpinion",
    "Governor",
    "GovernorClosedError",
    "GovernorDeadlineError",
    "GovernorSnapshot",
    "GovernorState",
    "Priority",
]

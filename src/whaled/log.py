"""One named logger per subsystem; handlers are attached only by the command line entry point."""

from __future__ import annotations

import logging

__all__ = [
    "alerts_logger",
    "app_logger",
    "governor_logger",
    "http_logger",
    "jobs_logger",
    "mail_logger",
    "monitor_logger",
    "opinion_logger",
    "simulator_logger",
    "store_logger",
    "workflows_logger",
    "ws_logger",
]

app_logger = logging.getLogger("whaled.app")
opinion_logger = logging.getLogger("whaled.opinion")
governor_logger = logging.getLogger("whaled.governor")
store_logger = logging.getLogger("whaled.store")
jobs_logger = logging.getLogger("whaled.jobs")
workflows_logger = logging.getLogger("whaled.workflows")
alerts_logger = logging.getLogger("whaled.alerts")
mail_logger = logging.getLogger("whaled.mail")
monitor_logger = logging.getLogger("whaled.monitor")
http_logger = logging.getLogger("whaled.http")
ws_logger = logging.getLogger("whaled.ws")
simulator_logger = logging.getLogger("whaled.simulator")

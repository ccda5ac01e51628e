"""Durable workflows (a journaled step engine) and the alert workflow with its rules and event consumer."""

from whaled.workflows.alert import ALERT_VERSION, ALERT_WORKFLOW, AlertSteps
from whaled.workflows.consumer import EventConsumer
from whaled.workflows.definition import RetryPolicy, Step, StepContext, WorkflowDefinition
from whaled.workflows.engine import BoundaryHook, WorkflowEngine
from whaled.workflows.errors import (
    StepTimeoutError,
    UnknownWorkflowError,
    WorkflowError,
    WorkflowNotFoundError,
    WorkflowVersionError,
)
from whaled.workflows.journal import WorkflowRun, prune_finished
from whaled.workflows.service import AlertService

__all__ = [
    "ALERT_VERSION",
    "ALERT_WORKFLOW",
    "AlertService",
    "AlertSteps",
    "BoundaryHook",
    "EventConsumer",
    "RetryPolicy",
    "Step",
    "StepContext",
    "StepTimeoutError",
    "UnknownWorkflowError",
    "WorkflowDefinition",
    "WorkflowEngine",
    "WorkflowError",
    "WorkflowNotFoundError",
    "WorkflowRun",
    "WorkflowVersionError",
    "prune_finished",
]

"""Errors of the workflow engine. Each message names the workflow or step and the action that fixes it."""

from __future__ import annotations

from whaled.errors import WhaledError

__all__ = [
    "StepTimeoutError",
    "UnknownWorkflowError",
    "WorkflowError",
    "WorkflowNotFoundError",
    "WorkflowVersionError",
]


class WorkflowError(WhaledError):
    """A workflow cannot be started, resumed or changed."""


class UnknownWorkflowError(WorkflowError, LookupError):
    """No definition is registered under this name."""

    def __init__(self, name: str, registered: list[str]) -> None:
        self.name = name
        super().__init__(
            f"no workflow named {name!r} is registered (registered: {', '.join(registered) or 'none'}); "
            "register its definition with WorkflowEngine.register() first"
        )


class WorkflowNotFoundError(WorkflowError, LookupError):
    def __init__(self, workflow_id: int) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"workflow {workflow_id} not found; list them with `whaled workflows list`")


class WorkflowVersionError(WorkflowError):
    """A run was started on a step list that this whaled no longer has."""

    def __init__(self, workflow_id: int, name: str, version: int, step_names: list[str], known: list[int]) -> None:
        self.workflow_id = workflow_id
        self.version = version
        super().__init__(
            f"workflow {workflow_id} ({name!r}) was started on version {version} with steps "
            f"{', '.join(step_names)}, but this whaled has versions {known or 'none'} with other steps; "
            f"run the whaled release that has version {version}, or `whaled workflows cancel {workflow_id}`"
        )


class StepTimeoutError(WorkflowError, TimeoutError):
    def __init__(self, workflow_id: int, step: str, timeout_s: float) -> None:
        self.workflow_id = workflow_id
        self.step = step
        self.timeout_s = timeout_s
        super().__init__(
            f"workflow {workflow_id} step {step!r} timed out after {timeout_s} s; "
            "raise the step's timeout_s if it is slow but healthy"
        )

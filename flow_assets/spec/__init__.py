"""The flow language: pydantic models for flow files and connections, and their loading."""

from flow_assets.spec.errors import FlowFileError, ProblemList
from flow_assets.spec.loading import LoadedProject, load_connections, load_flow_file, load_project
from flow_assets.spec.models import (
    ComputeTask,
    ConnectionSpec,
    Destination,
    FilterTask,
    FlowSpec,
    FormatTask,
    MapTask,
    MaskTask,
    Source,
    Task,
    Trigger,
    ValidateTask,
)

__all__ = [
    "ComputeTask",
    "ConnectionSpec",
    "Destination",
    "FilterTask",
    "FlowFileError",
    "FlowSpec",
    "FormatTask",
    "LoadedProject",
    "MapTask",
    "MaskTask",
    "ProblemList",
    "Source",
    "Task",
    "Trigger",
    "ValidateTask",
    "load_connections",
    "load_flow_file",
    "load_project",
]

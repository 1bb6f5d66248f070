"""A flow's task list as vectorised Polars expressions, and the pandera schema it implies."""

from flow_assets.transforms.tasks import (
    REASON,
    STATUS,
    Outcome,
    Tally,
    TaskError,
    annotate,
    pushable_filters,
)

__all__ = ["REASON", "STATUS", "Outcome", "Tally", "TaskError", "annotate", "pushable_filters"]

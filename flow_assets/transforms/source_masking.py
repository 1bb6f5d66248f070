"""`source.mask_at_source`: the flow's mask tasks run on each page as it is extracted, so a raw
value of a masked field is never stored anywhere, not even in the staging area."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import polars as pl

from flow_assets.spec.models import FlowSpec, MaskSpec
from flow_assets.transforms.masking import mask_expr
from flow_assets.transforms.tasks import TaskError, annotate


def masked_at_source(flow: FlowSpec) -> dict[int, MaskSpec]:
    """The mask tasks the source applies, by task index (none unless mask_at_source)."""
    if not flow.source.mask_at_source:
        return {}
    return {i: s for i, s in enumerate(flow.task_specs) if isinstance(s, MaskSpec)}


def raw_masked_fields(flow: FlowSpec) -> list[str]:
    """Source fields whose raw values the staging area holds for a later mask: each mask's
    field traced back through the renames before it (none when masked at the source)."""
    if flow.source.mask_at_source:
        return []
    fields = []
    for i, spec in enumerate(flow.task_specs):
        if not isinstance(spec, MaskSpec):
            continue
        name = spec.field
        for task in reversed(flow.tasks[:i]):
            for old, target in (getattr(task, "map", None) or {}).items():
                if (target if isinstance(target, str) else (target.to or old)) == name:
                    name = old
        fields.append(name)
    return fields


def check_masks_at_source(
    flow: FlowSpec, source: pl.Schema, salts: Mapping[int, str], file: str
) -> None:
    """Each mask names a source field, and no task before it reads that field (it would see
    the masked value, not the raw one). Errors name the task."""
    masks = masked_at_source(flow)
    if flow.source.mask_at_source and not masks:
        raise TaskError(f"{file}: source.mask_at_source: the flow has no mask task")
    for i, spec in masks.items():
        where = f"{file}: tasks[{i}].mask.field"
        if spec.field not in source:
            raise TaskError(
                f"{where}: '{spec.field}' is not a field of the source; with "
                "source.mask_at_source a mask names the field as the source does"
            )
        # Planned without the field, the earlier tasks fail exactly if one of them reads it.
        earlier = flow.model_copy(update={"tasks": flow.tasks[:i]})
        without = pl.LazyFrame(schema={k: v for k, v in source.items() if k != spec.field})
        try:
            annotate(without, earlier, salts, file, skip=masks.keys()).collect_schema()
        except TaskError as exc:
            raise TaskError(
                f"{where}: an earlier task reads '{spec.field}', which mask_at_source masks "
                f"while extracting; put the mask first or drop mask_at_source ({exc})"
            ) from None


def mask_pages(
    pages: Iterator[pl.DataFrame], flow: FlowSpec, salts: Mapping[int, str]
) -> Iterator[pl.DataFrame]:
    exprs = [mask_expr(spec, salts.get(i)) for i, spec in masked_at_source(flow).items()]
    for page in pages:
        yield page.with_columns(exprs) if exprs else page


def masked_schema(schema: pl.Schema, flow: FlowSpec) -> pl.Schema:
    """The extracted schema once the source's masks are applied (masked values are text)."""
    masks = masked_at_source(flow)
    return pl.Schema(
        {k: pl.String() if any(s.field == k for s in masks.values()) else v
         for k, v in schema.items()}
    )  # fmt: skip

"""Where records go: IO managers for each destination, and the staging area for extracted data."""

from flow_assets.destinations.lake import Lake, LakeIOManager
from flow_assets.destinations.staging import PageStream, StagingArea, StagingIOManager

__all__ = ["Lake", "LakeIOManager", "PageStream", "StagingArea", "StagingIOManager"]

"""The small core every part of the AppFlow importer builds on: the request, what was not carried
and notes (by the input's own paths), failures, and the connections the flow names."""

from __future__ import annotations

import re
from typing import Any

from flow_assets.spec.appflow_model import join
from flow_assets.spec.appflow_tables import AWS_CONNECTION, AWS_CONNECTORS, CONNECTION_KINDS, CUSTOM
from flow_assets.spec.errors import FlowFileError
from flow_assets.spec.loading import CONNECTIONS_FILE


def normalise(text: str, prefix: str) -> str:
    """'My-Salesforce.Flow' -> 'my_salesforce_flow': lower_snake_case, as flow and connection
    names are."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
    snake = re.sub(r"[^a-z0-9]+", "_", snake.lower()).strip("_")
    return snake if re.match(r"[a-z]", snake) else f"{prefix}_{snake}".rstrip("_")


class ImportBase:
    """The request being imported and what the import found; the source, task, destination and
    trigger parts (mixins) share it."""

    def __init__(self, request: dict, where: Any, file: str, connectors: dict[str, str]):
        self.req, self.where, self.file, self.connectors = request, where, file, connectors
        self.not_carried: list[str] = []
        self.notes: list[str] = []
        self.suggested: dict[str, dict[str, Any]] = {}

    def skip(self, path: str, why: str) -> None:
        self.not_carried.append(f"{self.where(path)}: {why}")

    def note(self, path: str, text: str) -> None:
        self.notes.append(f"{self.where(path)}: {text}")

    def fail(self, path: str, message: str) -> FlowFileError:
        return FlowFileError.single(self.file, self.where(path), message)

    def connection(self, config: dict, path: str, connector: str, **settings: Any) -> str:
        """The connection named after connectorProfileName, suggested for connections.yaml with
        the settings the flow tells (the rest of a profile is not in the flow)."""
        profile = config.get("connectorProfileName")
        if profile:
            name = normalise(profile, "connection")
            if name != profile:
                self.note(
                    join(path, "connectorProfileName"), f"'{profile}' is connection '{name}' here"
                )
        elif config["connectorType"] in AWS_CONNECTORS:
            name, connector = AWS_CONNECTION, "aws"
        else:
            name = f"{connector}_default"
            self.note(path, f"no connectorProfileName: connection '{name}' stands in for it")
        if connector in CONNECTION_KINDS:
            self.suggested.setdefault(name, {"connector": connector}).update(settings)
        return name

    def custom_connector(self, config: dict, path: str) -> str:
        """What an AppFlow CustomConnector profile reaches: the flow does not say (AppFlow keeps
        it as the profile's connectorLabel), the connection of the same name does."""
        profile = config.get("connectorProfileName") or ""
        name = normalise(profile, "connection") if profile else ""
        kind = self.connectors.get(name)
        if kind in CUSTOM:
            return kind
        where = join(path, "connectorProfileName" if profile else "connectorType")
        wanted = " or ".join(CUSTOM)
        if kind is None:
            raise self.fail(
                where,
                f"a CustomConnector flow does not say which connector profile '{profile}' "
                "reaches (AppFlow keeps that as the profile's connectorLabel): define connection "
                f"'{name or 'NAME'}' in {CONNECTIONS_FILE} beside the flow file with connector: "
                f"{wanted}, then import again",
            )
        raise self.fail(
            where,
            f"connection '{name}' in {CONNECTIONS_FILE} is a {kind} connection; a CustomConnector "
            f"flow is read here through a {wanted} connection",
        )

    def _properties(self, config: dict, path: str, key: str) -> tuple[str, dict]:
        """The one entry of source/destinationConnectorProperties, named like connectorType."""
        entries = config[key]
        names = [k for k in entries if k.lower() == config["connectorType"].lower()]
        if len(entries) != 1 or not names:
            raise self.fail(
                join(path, key),
                f"needs exactly one entry, named like connectorType '{config['connectorType']}'",
            )
        return join(path, f"{key}.{names[0]}"), entries[names[0]]

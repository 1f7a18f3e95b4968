"""The typed errors that lower layers raise and the CLI turns into messages."""

from __future__ import annotations


class DevtunnelError(Exception):
    """An error a user can act on: where it came from, what is wrong, what to do.

    `source` names the flag, variable (and the file it came from) or URL; `fault`
    says what is wrong with it; `hint` says what to do. None of them may carry
    key material.
    """

    def __init__(self, source: str, fault: str, hint: str = "") -> None:
        super().__init__(f"{source}: {fault}" if source else fault)
        self.source = source
        self.fault = fault
        self.hint = hint


class ConfigError(DevtunnelError):
    """Bad settings, keys or flags (a port in use among them): the CLI exits 2."""


class RunError(DevtunnelError):
    """The run itself failed (the tunnel would not open, the agent is missing): the CLI exits 1."""

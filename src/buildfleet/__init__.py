"""buildfleet: build a U-Boot tree for many boards and commits, here and on a fleet."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1

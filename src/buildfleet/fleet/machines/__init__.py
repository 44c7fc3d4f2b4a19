"""The fleet's machines: choice, SSH, probing, shipping the tool, ``--mach``, ``--kill-workers``."""

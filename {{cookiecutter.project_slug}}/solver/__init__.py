"""The shared solver library every competition in this repository uses.

Importing it has no side effects; every module is a set of plain functions and small dataclasses.
"""

__version__ = "0.1.0"

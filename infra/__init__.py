"""The ml-app Pulumi program's building blocks: one ComponentResource per concern.

`infra.config` turns a stack's configuration into one validated, frozen object; every other
module builds one component from a typed ``*Args`` dataclass. ``__main__.py`` wires them.
"""

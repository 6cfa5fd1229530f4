"""Protobuf classes for MEXC's spot v3 push frames, generated from the .proto files here.

See README.md in this folder for where the definitions come from and how to regenerate.
"""

__all__: list[str] = []

"""Codecs: the one place that turns messages into wire form and back, per path."""

from core.codec.base import Codec, Decoded, FieldMap, Message, RawFieldMap
from core.codec.fields import decode_field_map, encode_field_map
from core.codec.pydantic_codec import CONTRACTS
from core.codec.registry import build_codec, codec_for

__all__ = [
    "CONTRACTS",
    "Codec",
    "Decoded",
    "FieldMap",
    "Message",
    "RawFieldMap",
    "build_codec",
    "codec_for",
    "decode_field_map",
    "encode_field_map",
]

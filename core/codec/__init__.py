"""Codecs: the one place that turns messages into wire form and back, per path."""

from core.codec.base import Codec, Decoded, FieldMap, Message, RawFieldMap, ShadowCallback
from core.codec.fields import decode_field_map, encode_field_map
from core.codec.pydantic_codec import CONTRACTS
from core.codec.registry import (
    build_codec,
    codec_for,
    codec_for_mode,
    profile_models,
    register_path,
    register_profile,
    register_shadow,
    shadow_codec,
)
from core.codec_modes import CodecMode, available_modes, codec_mode, mode_available, mode_of

__all__ = [
    "CONTRACTS",
    "Codec",
    "CodecMode",
    "Decoded",
    "FieldMap",
    "Message",
    "RawFieldMap",
    "ShadowCallback",
    "available_modes",
    "build_codec",
    "codec_for",
    "codec_for_mode",
    "codec_mode",
    "decode_field_map",
    "encode_field_map",
    "mode_available",
    "mode_of",
    "profile_models",
    "register_path",
    "register_profile",
    "register_shadow",
    "shadow_codec",
]

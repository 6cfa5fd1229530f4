"""What the matrix unit tests draw from: the codec of each service variant, and any mix of them."""

from __future__ import annotations

from hypothesis import strategies as st

from core.codec import Codec, build_codec
from core.topics import CodecPath, Profile
from harness.matrix import Mix, Variant

__all__ = ["CODECS", "mixes"]

CODECS: dict[str, Codec] = {
    "legacy": build_codec(CodecPath.LEGACY),
    "pydantic-lenient": build_codec(CodecPath.PYDANTIC, Profile.LENIENT),
    "pydantic-strict": build_codec(CodecPath.PYDANTIC, Profile.STRICT),
}
"""The decoder of each variant a service of a mix runs, by the variant's name."""

_variants = st.sampled_from(list(Variant))
mixes = st.builds(Mix, _variants, _variants, _variants, _variants)
"""Any mix of variants across the four services."""

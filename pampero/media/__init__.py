"""Images in chat requests: SSRF-safe fetching, ``data:`` URIs, bounded decoding.

    policy.py   MediaPolicy (timeouts, caps, allow-list), built once from the settings
    address.py  what a URL's host means (odd IPv4 spellings) and which addresses are public
    fetch.py    Fetcher: resolve once, check every address, connect to the checked one
    decode.py   data: URIs, and Pillow decoding into upright RGB with a pixel cap
    source.py   ImageSource.load(part, policy) and collect_images(messages, policy)
    codes.py    the ``code`` of every error raised here (all 400 invalid_request_error)

Nothing here imports an engine or the HTTP layer.
"""

from pampero.media.policy import AllowList, MediaPolicy
from pampero.media.source import ImageSource, LoadedImage, image_parts

__all__ = ["AllowList", "ImageSource", "LoadedImage", "MediaPolicy", "image_parts"]

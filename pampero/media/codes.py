"""The ``code`` of each ``InvalidRequestError`` the media package raises (all are HTTP 400).

Clients and tests branch on these, never on the message text.
"""

from __future__ import annotations

INVALID_IMAGE_URL = "invalid_image_url"
"""Malformed URL, unsupported scheme, or credentials in the URL."""

IMAGE_URL_BLOCKED = "image_url_blocked"
"""The URL (or a redirect) leads to an address that is not public and not allow-listed."""

IMAGE_FETCH_FAILED = "image_fetch_failed"
"""DNS, connection, TLS or HTTP failure, an error status, or too many redirects."""

IMAGE_FETCH_TIMEOUT = "image_fetch_timeout"
"""The fetch did not finish (DNS, connect, redirects and body together) within the timeout."""

IMAGE_TOO_LARGE = "image_too_large"
"""More bytes than the byte cap, or more pixels than the pixel cap."""

INVALID_IMAGE = "invalid_image"
"""Bad base64, a non-image media type or body, an unsupported format, or a corrupt image."""

TOO_MANY_IMAGES = "too_many_images"
"""More images in the request (all turns together) than the per-request limit."""

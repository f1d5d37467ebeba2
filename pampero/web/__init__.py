"""What pampero serves to a browser: the playground page (``/``, ``/playground``), the
interactive API documentation (``/docs``, Swagger UI over ``/openapi.json``) and their static
assets under ``/static/``, all shipped inside the package (no CDN; they work offline).

Every page and asset is public (``PUBLIC_PATHS``, ``PUBLIC_PREFIX``): a browser loads them
without a key, and the page asks for one when the API answers 401. See ``pages.py``.
"""

from pampero.web.pages import PUBLIC_PATHS, PUBLIC_PREFIX, STATIC, web_routes

__all__ = ["PUBLIC_PATHS", "PUBLIC_PREFIX", "STATIC", "web_routes"]

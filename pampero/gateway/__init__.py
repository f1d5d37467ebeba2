"""The gateway: upstream OpenAI-compatible providers and local models behind one router per
model id, with the ``provider`` object, fallbacks, failover and circuit breakers.

Modules, in the order a request meets them: ``gateway`` (the model ids and their providers,
``GET /v1/providers``), ``router`` (attempts, stream commit), ``selection`` (which providers
may answer), ``policies`` (default order among providers; ``prefix``: prefix-cache affinity),
``health`` (circuit breakers,
observed latency), ``upstream`` (one upstream server over a pooled HTTP client), ``discovery``
(its ``GET /v1/models``), ``failures`` (what an attempt's failure means), ``metrics``. See
docs/gateway.md.
"""

from pampero.gateway.gateway import Gateway

__all__ = ["Gateway"]

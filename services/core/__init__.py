"""The base every package builds on; it imports nothing else of astrostream.

``settings`` (the one ``Settings`` class, from ``ASTRO_*``), ``errors`` (the exception
hierarchy and the one pydantic ``ValidationError`` formatter), ``schemas`` (the contract's
messages: Paper, Alert, DeadLetter, ModelUpdate), ``ids`` (deterministic point and alert ids,
the content digest), ``text`` (sentence splitting), ``papers`` (reading paper JSONL files),
``clock`` (``utcnow``), ``metrics`` (Prometheus counters), ``retry`` (waiting out an outage),
``logs`` (the logging setup) and ``types`` (Protocols between the layers).
"""

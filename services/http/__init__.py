"""The HTTP API: ``views`` (the JSON view base, the one table from errors to statuses, the
error middleware and the routes), ``reads`` (search, similar papers, a paper, stats),
``subscriptions`` (subscription and alert views behind the write token) and ``params`` (query-string
parsing, checked before any expensive work).
"""

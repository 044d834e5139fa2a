"""Related-work alerts: ``subscriptions`` (request validation, ``SubscriptionMeta`` and the
Qdrant collections of subscriptions and alerts), ``matcher`` (pure scoring of a paper against a
subscription), ``hook`` (``AlertMatcher``, the embed stage's hook that percolates new papers
and publishes alerts), ``webhooks`` (signed, retried delivery with an SSRF guard) and
``lexicon`` (the document-frequency table behind the lexical signal).
"""

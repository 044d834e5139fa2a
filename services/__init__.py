"""astrostream: arXiv papers in, sentence vectors and related-work alerts out.

Papers arrive on the ``astro.papers`` Kafka topic (published by ``astrostream publish`` or by
the ``ingest`` role, which polls arXiv); the ``embed`` stage splits each abstract into
sentences, encodes them in micro-batches and writes them to Qdrant; the ``alerts`` hook
percolates each new paper into the subscriptions; the HTTP API serves search, papers,
subscriptions and alerts. The public contract (topics, payloads, endpoints) is
``ARCHITECTURE.md``.

Where to start reading: ``services.worker.app`` (how one process wires the roles together),
then ``services.embed.pipeline`` (the stage every paper goes through), then
``services.alerts.hook``.

Packages, in dependency order (each imports only the ones listed before it; import-linter
checks this, see ``[tool.importlinter]`` in ``pyproject.toml``):

* ``core``: settings, errors, message schemas, ids, text splitting, metrics, retry, the
  clock, paper files and the Protocols between layers. No network I/O.
* ``store`` | ``models`` | ``kafka`` (siblings): Qdrant access, the sentence encoder, and
  the embedded broker and producer.
* ``embed``: the embed stage, its Faust agent and model rollout.
* ``alerts`` | ``ingest`` (siblings): subscriptions, scoring and webhooks; arXiv polling.
* ``http``: the API views and the one table from errors to HTTP statuses.
* ``worker``: the Faust app and the ``Runtime`` that wires everything for the roles a
  process is given.
* ``cli``: the ``astrostream`` command.

``trainer/`` (fine-tuning) uses only ``core``, ``models`` and ``kafka``; ``benchmarks/``
drives whole processes.
"""

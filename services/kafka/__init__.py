"""Kafka outside Faust: ``broker`` (the embedded Tansu broker that ``astrostream up`` and the
tests start) and ``publisher`` (``Publisher``, an aiokafka producer that sends papers and JSON
messages and waits for the acknowledgements).
"""

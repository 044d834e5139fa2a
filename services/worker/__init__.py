"""Process wiring: ``app`` (``create_app``: the Faust app, its topics and agents, the HTTP
routes for the roles this process is given, and the ``Runtime`` it holds: settings, the
serving and indexing bindings, the subscription store, readiness checks).
"""

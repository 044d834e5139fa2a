"""The web app for people: server-rendered pages on the worker's aiohttp server (api role).

``pages`` (routes, owner and CSRF checks, errors as HTML pages), ``present`` (alerts and papers
as a page shows them: strength words, evidence, links), ``forms`` (form fields to and from a
subscription request), ``security`` (owner cookie, CSRF tokens, origin check), ``marks``
(papers marked read), ``status`` (lag for the status page); ``templates/`` (Jinja2) and
``static/`` (CSS, served locally: no CDN).
"""

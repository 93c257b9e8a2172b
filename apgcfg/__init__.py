"""The application: the ``apgcfg`` command, the HTTP API and the ``run`` supervisor.

It sits on top of the library (``config_core``, ``connectors``, ``workers``) and may import
all of it.
"""

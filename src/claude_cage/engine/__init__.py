"""The engine layer: everything that speaks to a container engine.

`api.py` is the interface the operations use, and `answers.py` the typed values it
returns (never an engine's JSON); `client.py` implements it over the
Docker Engine API (`transport.py` frames the HTTP, `dial.py` and `endpoints.py` find
the socket); `fleet.py` chooses among several engines; `container_request.py` turns a
planned container into the engine's create body.
"""

"""Egress policy as code: the policy file, its layers, and what squid makes of them.

`schema` declares the file and reads it (with line numbers), `rules` decides a request
the way the companion's squid does, `squid` compiles the layers into squid's rules,
`layers` finds and reads the files on the host, `suggest` writes the least policy that
allows what a session did. docs/policy.md is the user's reference.
"""

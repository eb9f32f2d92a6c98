"""The local dashboard (`claude-cage ui`): a page on 127.0.0.1 over the same operations
as the commands. Only the `ui` command imports it, so the CLI's start-up never pays for
it. `guard.py` decides who may ask (token, Host, Origin, CSRF); `app.py` answers (a WSGI
application: JSON, server-sent events for the live views, the page's own files from
`static/`); `server.py` serves it (the standard library's wsgiref, one thread a request)
and keeps the state file `ui --detach` and `ui --stop` use."""

"""The platform's policy at the edge: what decides, for the proxy, how a request to a space is treated.

`spacehub.proxy` is a reverse proxy that knows nothing of spacehub: it is given a resolver (Host -> route or
error) and activity hooks, and it imports nothing from the rest of the package. Everything that gives it
spacehub's meaning sits here, in front of the spaces and apart from the control plane's API and UI:

  - `gateway`: the resolver: which Host goes to the API, to a space's app, or nowhere (routes from Redis, rows
    from SQL, cached off the hot path), and the revision a Gradio client stays pinned to during a redeploy;
  - `spacegate`: who may reach a private space (platform tokens, cached by hash);
  - `spaceauth`: the signed-URL exchange that lets the web UI's readers into a private space's host (a short-lived
    `?__sign=` token traded for a cookie scoped to that host);
  - `wake`: waking a sleeping or frozen space on request, and holding the request meanwhile;
  - `activity`: per-space request activity, published for the supervisor (sleep, freeze, drains).

The modules here are imported where they are used (the serving roles, the web UI, the worker side); this package
imports none of them itself, so that a reader of `activity` does not load the resolver and the database layer.
"""

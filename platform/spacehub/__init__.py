"""spacehub control plane: settings, domain, store, repos, API, Hub-compatible API, web UI, proxy, auth."""

__version__ = "0.1.0"

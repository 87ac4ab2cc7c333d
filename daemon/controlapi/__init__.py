"""The control API: the daemon's only door for the CLI and the TUI (HTTP+JSON on a Unix socket).

``wire`` holds the JSON shapes and ``client`` the async client; both import nothing else from the
daemon, so the TUI can depend on them without dragging in the store or the connectors.
"""

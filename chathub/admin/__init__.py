"""The admin socket: the daemon's server side and the client the CLI and dashboard use."""

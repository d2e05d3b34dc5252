"""The runnable hub: settings, logging, the embedded runtime, the CLI and the HTTP API."""

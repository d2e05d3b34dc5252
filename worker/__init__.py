"""Running the hub: the embedded Temporal server, the Temporal client, and the worker."""

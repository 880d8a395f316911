"""The HTTP face of the event log: the Starlette application and the `eventlog` command."""

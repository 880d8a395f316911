"""Defaults for the server's data folder and for the server address of the client commands.

The command line and the application share these defaults, so that
`eventlog serve` and the client commands on the same machine agree without
options:

>>> default_data_dir({"EVENTLOG_DATA_DIR": "/srv/eventlog"})
PosixPath('/srv/eventlog')
>>> default_data_dir({"XDG_DATA_HOME": "/home/ada/.data"})
PosixPath('/home/ada/.data/eventlog')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DATA_DIR_VARIABLE = "EVENTLOG_DATA_DIR"
URL_VARIABLE = "EVENTLOG_URL"
TOKEN_VARIABLE = "EVENTLOG_TOKEN"
MAX_HEADER_BYTES_VARIABLE = "EVENTLOG_MAX_HEADER_BYTES"
HEADER_TIMEOUT_VARIABLE = "EVENTLOG_HEADER_TIMEOUT_SECONDS"
BODY_TIMEOUT_VARIABLE = "EVENTLOG_BODY_TIMEOUT_SECONDS"

DEFAULT_URL = "http://127.0.0.1:8000"
# Maximum size of a request line plus headers, in bytes: more than nginx's
# default of four 8 KiB buffers, and less than Go's 1 MiB.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
# Header fields of one request; more get 431.
MAX_HEADER_FIELDS = 100
# Seconds a client may take to send a request line and headers.
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
# Seconds a request body may pause between two reads.
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0
# The file in the data folder where the server writes the first admin token.
ADMIN_TOKEN_FILE = "admin.token"


def default_data_dir(environment: Mapping[str, str] | None = None) -> Path:
    """Return the data folder to use when none is given on the command line.

    The order is `EVENTLOG_DATA_DIR`, then `$XDG_DATA_HOME/eventlog`, then
    `~/.local/share/eventlog`. An empty or relative `XDG_DATA_HOME` is
    ignored, as the XDG Base Directory Specification requires. The folder
    is not created here. `environment` defaults to `os.environ`.
    """
    if environment is None:
        environment = os.environ

    configured = environment.get(DATA_DIR_VARIABLE)
    if configured:
        return Path(configured).expanduser()

    data_home = environment.get("XDG_DATA_HOME")
    if data_home and Path(data_home).is_absolute():
        return Path(data_home) / "eventlog"
    return Path.home() / ".local" / "share" / "eventlog"


def read_admin_token(data_dir: Path) -> str | None:
    """Return the admin token that the server wrote to its data folder, or None.

    None means the file is missing, unreadable or empty. The caller then
    sends no token, and the server's 401 response names what is missing.
    """
    try:
        token = (data_dir / ADMIN_TOKEN_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None

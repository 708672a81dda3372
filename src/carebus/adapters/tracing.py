"""What the handlers' X-Ray tracing patches."""

from typing import Final

# The handlers reach out through botocore only. Left to its default, the X-Ray SDK imports every library
# it can patch (requests, sqlite3, SQLAlchemy, pg8000, pymongo ...) at each cold start, for nothing.
TRACED_LIBRARIES: Final = ("botocore",)

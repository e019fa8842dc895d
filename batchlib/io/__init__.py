"""Reading and writing containers (h5 now; n5 and zarr plug in here)."""

from .containers import CONTAINER_EXTENSIONS, is_container, open_file
from .stamps import read_key_stamps, write_key_stamps

__all__ = ["CONTAINER_EXTENSIONS", "is_container", "open_file", "read_key_stamps", "write_key_stamps"]

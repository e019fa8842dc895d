"""Containers (h5, n5, zarr), multiscale images and tables."""

from .backends import CONTAINER_EXTENSIONS, is_container
from .containers import Group, open_file
from .images import has_image, image_attrs, read_image, read_image_later, set_image_info, write_image
from .stamps import read_key_stamps, write_key_stamps
from .tables import (
    EncodedTable,
    encode_table,
    has_table,
    plate_table_path,
    read_plate_table,
    read_table,
    write_plate_table,
    write_table,
)

__all__ = [
    "CONTAINER_EXTENSIONS",
    "Group",
    "is_container",
    "open_file",
    "read_key_stamps",
    "write_key_stamps",
    "write_image",
    "read_image",
    "read_image_later",
    "has_image",
    "image_attrs",
    "set_image_info",
    "write_table",
    "encode_table",
    "EncodedTable",
    "read_table",
    "has_table",
    "plate_table_path",
    "write_plate_table",
    "read_plate_table",
]

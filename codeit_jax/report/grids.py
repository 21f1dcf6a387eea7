"""ARC grids drawn as small palette PNGs for the HTML report.

A grid becomes an indexed-colour PNG (one palette entry per ARC colour plus one for the cell
borders), encoded here with zlib alone: the report needs hundreds of grids, and a few hundred
bytes each keeps a report of every solved task small enough to open and mail, where one HTML
element per cell would not.
"""

from __future__ import annotations

import base64
import html
import struct
import zlib
from collections.abc import Sequence

import numpy as np

#: The ARC colours 0-9: black, blue, red, green, yellow, grey, magenta, orange, light blue,
#: maroon (the conventional ARC palette; the hex values are this project's choice).
ARC_COLOURS: tuple[str, ...] = (
    "#000000",
    "#1e63d6",
    "#e53a2f",
    "#2fb34a",
    "#f7d51d",
    "#9a9a9a",
    "#e23fa8",
    "#f28c1c",
    "#7fd3f5",
    "#8a1c2a",
)
#: Colour of the lines between cells (palette index 10).
BORDER_COLOUR = "#4a4a4a"
_BORDER_INDEX = len(ARC_COLOURS)

#: Pixels per cell side (without the border line) at the default size.
DEFAULT_CELL_PX = 10


def _rgb(hex_colour: str) -> bytes:
    return bytes(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def grid_pixels(grid: Sequence[Sequence[int]], cell_px: int = DEFAULT_CELL_PX) -> np.ndarray:
    """Palette indices of the drawn grid: ``cell_px`` square cells with one-pixel borders."""
    cells = np.asarray(grid, dtype=np.int64)
    if cells.ndim != 2 or cells.size == 0:
        raise ValueError(
            f"a grid must be a non-empty rectangle of colours, got shape {cells.shape}"
        )
    if cells.min() < 0 or cells.max() >= len(ARC_COLOURS):
        raise ValueError(
            f"grid colours must be 0-{len(ARC_COLOURS) - 1}, got {cells.min()}..{cells.max()}"
        )
    if cell_px < 1:
        raise ValueError(f"cell_px must be positive, got {cell_px}")
    step = cell_px + 1
    rows, cols = cells.shape
    ys, xs = np.arange(rows * step + 1), np.arange(cols * step + 1)
    inside = (ys % step != 0)[:, None] & (xs % step != 0)[None, :]
    cell_y = np.minimum((ys - 1) // step, rows - 1).clip(0)
    cell_x = np.minimum((xs - 1) // step, cols - 1).clip(0)
    pixels = np.where(inside, cells[cell_y[:, None], cell_x[None, :]], _BORDER_INDEX)
    pixels = pixels.astype(np.uint8)
    return pixels


def grid_png(grid: Sequence[Sequence[int]], cell_px: int = DEFAULT_CELL_PX) -> bytes:
    """The grid as an 8-bit indexed-colour PNG file."""
    pixels = grid_pixels(grid, cell_px)
    height, width = pixels.shape
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    palette = b"".join(_rgb(c) for c in (*ARC_COLOURS, BORDER_COLOUR))
    scanlines = np.hstack([np.zeros((height, 1), dtype=np.uint8), pixels])  # filter type 0
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"PLTE", palette),
            _chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 9)),
            _chunk(b"IEND", b""),
        )
    )


def png_data_uri(png: bytes) -> str:
    """A PNG as a ``data:`` URI, so the HTML needs no other file."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def grid_img_tag(grid: Sequence[Sequence[int]], title: str, cell_px: int = DEFAULT_CELL_PX) -> str:
    """An ``<img>`` of the grid whose alt/title text gives its size (the picture says the rest)."""
    rows, cols = len(grid), len(grid[0])
    uri = png_data_uri(grid_png(grid, cell_px))
    label = html.escape(f"{title} ({rows}x{cols})")
    return f'<img class="grid" src="{uri}" alt="{label}" title="{label}">'

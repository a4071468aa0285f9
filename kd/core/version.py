"""kd's version, here at the bottom so that any module may record it (stores, exports) without importing `kd`."""

__version__ = "0.2.0"

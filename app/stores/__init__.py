"""Session stores beyond the `files` default (app/memory.py's `SessionStore` seam): `sqlite` and `redis`, one module
each, imported only when a config names them."""

"""Built-in memory cores; importing this package registers them."""

"""Edit model families behind the one `Editor` interface (see registry.py for the list)."""

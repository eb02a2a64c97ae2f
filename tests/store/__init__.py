"""The store contract suite (run against memory://, sqlite:// and postgresql://)."""

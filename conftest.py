"""Repository-wide pytest configuration: tests import the packages from this checkout."""

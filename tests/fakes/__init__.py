"""In-process fakes of external services, for tests that exercise real client libraries."""

"""The management API's tenancy: API-key authentication, permissions, tenant-scoped bases."""

//! The embedded local tenant: a tenant kept in a file that enforces domain.md on its own.

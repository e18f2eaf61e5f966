//! Access control lists: users, their rules and permission checks.

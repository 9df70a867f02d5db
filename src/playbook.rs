//! Built-in playbooks.

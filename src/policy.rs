//! Password generation from a policy.

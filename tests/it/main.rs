//! The integration tests: one binary (feature `lab`), driving the real `rotor` binary against
//! real sshd hosts that the lab fixture starts and stops.

mod api;
mod app_config;
mod audit;
mod bad_input;
mod bad_playbooks;
mod checkout;
mod concurrent;
mod data_dir;
mod enroll_ssh_key;
mod export;
mod faults;
mod hardening;
mod hostile;
mod hostile_ldap;
mod interrupt;
mod keyring;
mod lab;
mod ldap;
mod ldap_lab;
mod recover_changed;
mod rotate;
mod scan;
mod schedule;
mod serve;
mod smoke;
mod ssh_keys;
mod status;
mod stress;
mod support;
mod systemd;
mod timeouts;
mod uniqueness;
mod unpark;
mod web;

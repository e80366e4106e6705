//! End-to-end tests: the real `flowgate` binary against real files and real peers.

mod azure;
mod cli;
mod cluster;
mod deploy;
mod filter;
mod geoip;
mod golden;
mod identity;
mod kafka;
mod operations;
mod parse_back;
mod rdns;
mod rsyslog;
mod run;
mod support;
mod syslog;
mod torture;
mod volume;
